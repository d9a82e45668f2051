"""Provides ConversationScreen: one conversation's clocks, the reasons, and its timeline.

The screen appears at once with what the queue row knew; the clocks and the timeline
load in a worker. Every public word (names, messages, reasons quoting them) is drawn
as plain ``Content`` after :func:`monitor.text.sanitize`, wrapped, never parsed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static

from monitor.events import (
    OPEN_STATES,
    Actor,
    Clock,
    ClockState,
    Conversation,
    Event,
    EventKind,
    Metric,
)
from monitor.storage.board import QueueRow
from monitor.text import sanitize
from monitor.tui.keys import APP_KEYS, CONVERSATION_KEYS
from monitor.tui.messages import ConversationLoaded
from monitor.tui.render import (
    NOTHING,
    STATE_LABELS,
    clean,
    fit,
    format_clock,
    format_countdown,
    format_span,
    metric_label,
    safe_url,
)
from monitor.tui.widgets.header import KeyBar

if TYPE_CHECKING:
    from monitor.tui.app import BoardApp

MESSAGE_CHARS = 2000
"""Characters of one message shown in the timeline; the rest is counted, not drawn."""
MESSAGE_LINES = 12
"""Lines of one message shown in the timeline."""
TIMELINE_EVENTS = 500
"""The latest events shown; a longer history is summarized in one line."""

_STATE_STYLES = {
    ClockState.BREACHED: "bold $text-error",
    ClockState.OVERDUE: "$text-error",
    ClockState.AT_RISK: "bold $text-warning",
    ClockState.RUNNING: "$text-success",
    ClockState.PAUSED: "$text-muted",
    ClockState.MET: "$text-success",
    ClockState.CANCELLED: "$text-muted",
}
_METRIC_ORDER = {Metric.FIRST_RESPONSE: 0, Metric.NEXT_RESPONSE: 1, Metric.RESOLUTION: 2}


def _message_text(text: str | None) -> str:
    """Return a message body fit to draw: sanitized, bounded in characters and lines."""
    if not text:
        return "(no text)"
    body = sanitize(text).replace("\t", "    ")
    extra = ""
    if len(body) > MESSAGE_CHARS:
        extra = f"… ({len(body) - MESSAGE_CHARS:,} more characters)"
        body = body[:MESSAGE_CHARS]
    lines = body.splitlines() or [""]
    if len(lines) > MESSAGE_LINES:
        extra = extra or f"… ({len(lines) - MESSAGE_LINES} more lines)"
        lines = lines[:MESSAGE_LINES]
    if extra:
        lines.append(extra)
    return "\n".join(lines)


def _fields_text(fields: dict[str, object] | object) -> str:
    """Return an update's fields as ``priority high · assignee Kim``."""
    if not isinstance(fields, dict):
        return ""
    parts = []
    for name, value in fields.items():
        if name == "dismissed" and value is False:
            parts.append("dismissal undone")
            continue
        if isinstance(value, list | tuple):
            shown = ", ".join(clean(str(item), 30) for item in value) or "none"
        elif value is None or value == "":
            shown = "none"
        else:
            shown = clean(str(value), 60)
        parts.append(f"{clean(str(name), 30)} {shown}")
    return " · ".join(parts)


class ConversationScreen(Screen[None]):
    """One conversation: who, where, each clock with why, and what was said when."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *(key.binding() for key in CONVERSATION_KEYS),
        Binding("j", "scroll('down')", "Down", show=False),
        Binding("k", "scroll('up')", "Up", show=False),
        Binding("g", "scroll('home')", "Top", show=False),
        Binding("G", "scroll('end')", "Bottom", show=False),
    ]

    def __init__(self, key: tuple[str, str], row: QueueRow | None, zone: tzinfo) -> None:
        super().__init__()
        self.key = key
        self.row = row
        self.zone = zone
        self.conversation: Conversation | None = None
        self.events: list[Event] = []
        self.clocks: list[Clock] = []
        self.loaded = False
        self.now = datetime.now(UTC)

    def compose(self) -> ComposeResult:
        """Title, clocks and timeline, one scrolling column."""
        with VerticalScroll(id="conversation-body"):
            yield Static(self._title(), id="conversation-title")
            yield Static(self._clocks(), id="conversation-clocks")
            yield Static(self._timeline(), id="conversation-timeline")
        yield KeyBar((*CONVERSATION_KEYS, *APP_KEYS))

    def on_mount(self) -> None:
        """Scroll with the keyboard straight away."""
        self.query_one("#conversation-body").focus()

    @property
    def url(self) -> str | None:
        """The conversation's link, if it is a plain web link."""
        url = self.conversation.url if self.conversation is not None else None
        if url is None and self.row is not None:
            url = self.row.url
        return safe_url(url)

    @property
    def customer(self) -> str:
        """Who the conversation is with, for prompts."""
        name = self.conversation.customer if self.conversation is not None else None
        if name is None and self.row is not None:
            name = self.row.customer
        return clean(name, 60) or clean(self.key[1], 40)

    @property
    def dismissed(self) -> bool:
        """Whether the conversation is dismissed as of its last evaluation."""
        return self.conversation is not None and self.conversation.dismissed

    def on_conversation_loaded(self, message: ConversationLoaded) -> None:
        """Show what the worker read."""
        if message.key != self.key:
            return
        self.loaded = True
        self.conversation = message.conversation
        self.events = list(message.events)
        self.clocks = sorted(message.clocks, key=lambda c: (_METRIC_ORDER[c.metric], c.cycle))
        self._redraw()

    def show(self, key: tuple[str, str], row: QueueRow | None, now: datetime) -> None:
        """Show another conversation (the screen is made once and kept)."""
        self.key, self.row, self.now = key, row, now
        self.conversation, self.events, self.clocks = None, [], []
        self.loaded = False
        self._redraw()
        for body in self.query("#conversation-body").results(VerticalScroll):
            body.scroll_home(animate=False, immediate=True)

    def _redraw(self) -> None:
        """Draw every part again."""
        self._update("#conversation-title", self._title)
        self._update("#conversation-clocks", self._clocks)
        self._update("#conversation-timeline", self._timeline)
        # The parts change height: lay the column out again, from its root.
        for body in self.query("#conversation-body").results(VerticalScroll):
            body.refresh(layout=True)

    def _update(self, selector: str, content: Callable[[], Content]) -> None:
        """Redraw one part, if it is on screen (not while composing or closing)."""
        for part in self.query(selector).results(Static):
            part.update(content())

    def tick(self, now: datetime) -> None:
        """Move the countdowns of the clocks."""
        self.now = now
        # Only the countdowns change: the same lines, so no new layout.
        for part in self.query("#conversation-clocks").results(Static):
            part.update(self._clocks(), layout=False)

    # -- drawing --------------------------------------------------------------------------

    def _title(self) -> Content:
        """Customer, source and attributes; a loud line when dismissed."""
        conversation, row = self.conversation, self.row
        source, conversation_id = self.key
        kind = row.kind if row is not None else ""

        def attribute(name: str) -> str:
            value = getattr(conversation, name, None) if conversation is not None else None
            if value is None and row is not None:
                value = getattr(row, name, None)
            return NOTHING if value is None or value == "" else clean(str(value), 40)

        link = self.url
        raw_url = (conversation.url if conversation is not None else None) or (
            row.url if row is not None else None
        )
        if link is not None:
            link_part = (clean(link, 120), "$text-accent")
        elif raw_url:
            link_part = ("not an http(s) link: will not be opened", "$text-warning")
        else:
            link_part = ("no link", "$text-muted")
        subject = conversation.subject if conversation is not None else None
        if subject is None and row is not None:
            subject = row.subject
        lines = [
            Content.assemble(
                (self.customer, "bold $text-accent"),
                ("  ", ""),
                (clean(source, 40), "bold"),
                (f" ({clean(kind, 20)})" if kind else "", "$text-muted"),
                ("  #", "$text-muted"),
                (clean(conversation_id, 60), "$text-muted"),
            ),
        ]
        if subject:
            lines.append(Content.styled(clean(subject, 300), "bold"))
        policy = row.policy if row is not None else None
        if self.clocks:
            policy = self.clocks[0].policy
        lines.append(
            Content.assemble(
                ("priority ", "$text-muted"),
                (attribute("priority"), "bold"),
                ("  assignee ", "$text-muted"),
                (attribute("assignee"), "bold"),
                ("  group ", "$text-muted"),
                (attribute("group"), "bold"),
            )
        )
        lines.append(
            Content.assemble(
                ("channel ", "$text-muted"),
                (attribute("channel"), ""),
                ("  status ", "$text-muted"),
                (attribute("status"), ""),
                ("  policy ", "$text-muted"),
                (clean(policy, 40) if policy else "none matches: no clocks", ""),
            )
        )
        lines.append(Content.assemble(("link ", "$text-muted"), link_part))
        if self.dismissed:
            lines.append(
                Content.styled("⊘ dismissed: needs no reply (u undoes it)", "bold $text-warning")
            )
        return Content("\n").join(lines)

    def _clocks(self) -> Content:
        """Each clock: state, target, due, counted, paused; then the reasons."""
        header = Content.styled(
            f"{'CLOCK':<12}{'STATE':<12}{'TARGET':>8} {'DUE':<16}{'LEFT':>9}"
            f"{'COUNTED':>9}{'PAUSED':>8}",
            "bold $text-muted",
        )
        if not self.loaded:
            return Content.join(
                Content("\n"), [Content(""), header, Content.styled("loading…", "$text-muted")]
            )
        if not self.clocks:
            why = (
                "no policy matches this conversation: no clocks run"
                if self.row is None or self.row.policy is None
                else "no clock has started (no public customer message yet)"
            )
            return Content.join(Content("\n"), [Content(""), Content.styled(why, "$text-muted")])
        lines = [Content(""), header]
        for clock in self.clocks:
            lines.append(self._clock_line(clock))
            for reason in clock.reasons:
                lines.append(Content.styled("    · " + clean(reason, 300), "$text-muted"))
        if any(clock.reasons for clock in self.clocks):
            lines.append(
                Content.styled(
                    "    (reasons as `replywatch explain` gives them, with times in the "
                    "policy calendar's timezone)",
                    "$text-muted italic",
                )
            )
        return Content("\n").join(lines)

    def _clock_line(self, clock: Clock) -> Content:
        """One clock's figures."""
        state = clock.state
        label = STATE_LABELS.get(str(state), f"  {state}")
        if state is ClockState.MET:
            label = "✔ met"
        elif state is ClockState.CANCELLED:
            label = "⊘ cancelled"
        left = NOTHING
        if (
            clock.due_at is not None
            and state in OPEN_STATES | {ClockState.BREACHED}
            and (clock.stopped_at is None)
        ):
            left = format_countdown((clock.due_at - self.now).total_seconds())
        elif state is ClockState.PAUSED:
            left = format_countdown(clock.target_seconds - clock.elapsed_seconds)
        # Counted time is as of the last evaluation; the time left is live.
        counted = clock.elapsed_seconds
        paused = format_span(clock.paused_seconds) if clock.paused_seconds else NOTHING
        return Content.assemble(
            (fit(metric_label(clock.metric, clock.cycle), 12), "bold"),
            (fit(label, 12), _STATE_STYLES.get(state, "")),
            (f"{format_span(clock.target_seconds):>8} ", ""),
            (fit(format_clock(clock.due_at, self.zone, self.now), 16), ""),
            (f"{left:>9}", _STATE_STYLES.get(state, "") if left != NOTHING else ""),
            (f"{format_span(counted):>9}", ""),
            (f"{paused:>8}", ""),
        )

    def _timeline(self) -> Content:
        """What happened, oldest first: messages with who and whether public."""
        if not self.loaded:
            return Content.styled("loading the timeline…", "$text-muted")
        if self.conversation is None:
            return Content.styled("This conversation is not in the store.", "$text-error")
        events: Sequence[Event] = self.events
        lines = [Content(""), Content.styled("TIMELINE", "bold $text-muted")]
        if len(events) > TIMELINE_EVENTS:
            lines.append(
                Content.styled(
                    f"… {len(events) - TIMELINE_EVENTS:,} earlier events not shown", "$text-muted"
                )
            )
            events = events[-TIMELINE_EVENTS:]
        width = max((len(format_clock(e.at, self.zone, self.now)) for e in events), default=8)
        for event in events:
            lines.extend(self._event_lines(event, width + 1))
        return Content("\n").join(lines)

    def _event_lines(self, event: Event, width: int) -> list[Content]:
        """One event: when, what kind, by whom; a message's text below, indented."""
        when = fit(format_clock(event.at, self.zone, self.now), width)
        who = clean(event.author, 40)
        if event.kind is EventKind.MESSAGE:
            actor = event.actor or Actor.CUSTOMER
            arrow = "▸" if actor is Actor.CUSTOMER else "◂"
            visibility = ("public  ", "") if event.public else ("internal", "bold $text-warning")
            actor_style = {
                Actor.CUSTOMER: "bold $text-accent",
                Actor.AGENT: "bold $text-success",
                Actor.BOT: "$text-muted",
            }[actor]
            head = Content.assemble(
                (when, "$text-muted"),
                (f" {arrow} {actor!s:<9}", actor_style),
                visibility,
                ("  ", ""),
                (who or NOTHING, "bold"),
            )
            body = _message_text(event.text)
            style = "" if event.public else "italic $text-muted"
            text = Content.styled("\n".join("    " + line for line in body.split("\n")), style)
            return [head, text]
        if event.kind is EventKind.STATUS:
            what = f"status → {event.status}"
        elif event.kind is EventKind.UPDATE:
            what = "update: " + (_fields_text(dict(event.fields)) or "nothing")
        else:
            reason = event.fields.get("reason") if event.fields else None
            reason_text = clean(str(reason), 200) if reason else clean(event.text, 200)
            what = (
                "dismissed"
                + (f" by {who}" if who else "")
                + (f": {reason_text}" if reason_text else "")
            )
            who = ""
        return [
            Content.assemble(
                (when, "$text-muted"),
                (" ◆ ", "$text-muted"),
                (clean(what, 400), "$text-warning" if event.kind is EventKind.DISMISSED else ""),
                (
                    f"  ({who})" if who and event.kind is not EventKind.DISMISSED else "",
                    "$text-muted",
                ),
            )
        ]

    # -- actions (the app does the work) ----------------------------------------------

    def _board(self) -> BoardApp:
        """The app, which owns the store."""
        return cast("BoardApp", self.app)

    def action_scroll(self, where: str) -> None:
        """Scroll the timeline with the queue's keys."""
        for body in self.query("#conversation-body").results(VerticalScroll):
            moves = {
                "down": body.scroll_down,
                "up": body.scroll_up,
                "home": body.scroll_home,
                "end": body.scroll_end,
            }
            moves[where](animate=False)

    def action_back(self) -> None:
        """Back to the queue."""
        self.dismiss(None)

    def action_browse(self) -> None:
        """Open the conversation's link in the browser."""
        raw = self.conversation.url if self.conversation is not None else None
        if raw is None and self.row is not None:
            raw = self.row.url
        self._board().browse(raw)

    def action_dismiss_conversation(self) -> None:
        """Dismiss this conversation, asking why."""
        about = ""
        if self.row is not None:
            about = self.row.snippet or self.row.subject or ""
        self._board().ask_dismiss(self.key, self.customer, about)

    def action_undo(self) -> None:
        """Undo this conversation's dismissal."""
        self._board().undo(self.key)

    def reload(self) -> None:
        """Read the conversation again (it changed in the store)."""
        self._board().load_conversation(self)
