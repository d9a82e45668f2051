"""Provides the side panels: today's figures, the sources' health and the breach log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo

from textual.app import ComposeResult, RenderResult
from textual.containers import Vertical
from textual.content import Content
from textual.widget import Widget
from textual.widgets import OptionList, Sparkline, Static
from textual.widgets.option_list import Option

from monitor.storage import SourceState
from monitor.storage.board import LogEntry, LogKind, PolicyToday, local_midnight
from monitor.tui.render import (
    LOG_WORDS,
    NOTHING,
    clean,
    fit,
    format_clock,
    format_percent,
    format_span,
    hourly_medians,
    log_detail,
    log_summary,
    overall_percent,
    source_health,
)

_HEALTH_STYLES = {
    "ok": "$text-success",
    "warning": "bold $text-warning",
    "error": "bold $text-error",
}
_LOG_STYLES = {
    LogKind.BREACHED: "bold $text-error",
    LogKind.RECOVERED: "$text-success",
    LogKind.DISMISSED: "$text-muted",
    LogKind.UNDONE: "$text-warning",
}


class TodayTable(Widget):
    """Per policy since local midnight: % met, met / breached / open, p50 and p90."""

    DEFAULT_CSS = """
    TodayTable { height: auto; }
    """

    def __init__(self, zone: tzinfo, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.zone = zone
        self.today: tuple[PolicyToday, ...] = ()
        self.loaded = False

    def show(self, today: Sequence[PolicyToday]) -> None:
        """Show new figures."""
        self.today = tuple(today)
        self.loaded = True
        self.refresh(layout=True)

    def render(self) -> RenderResult:
        """Draw the table, a total line when there are several policies."""
        header = Content.styled(
            f"{'policy':<12}{'met':>7}{'kept':>6}{'brch':>6}{'open':>6}{'p50':>8}{'p90':>8}",
            "bold $text-muted",
        )
        if not self.loaded:
            return Content.styled("loading…", "$text-muted")
        if not self.today:
            return Content.join(
                Content("\n"), [header, Content.styled("no clocks today yet", "$text-muted")]
            )
        lines = [header]
        for item in self.today:
            lines.append(self._line(item.policy, item))
        if len(self.today) > 1:
            total = PolicyToday(
                "all",
                sum(item.met for item in self.today),
                sum(item.breached for item in self.today),
                sum(item.open for item in self.today),
                None,
                None,
            )
            lines.append(self._line("all", total, bold=True))
        return Content("\n").join(lines)

    @staticmethod
    def _line(name: str, item: PolicyToday, *, bold: bool = False) -> Content:
        """One policy's line, % met coloured by how it is doing."""
        percent = item.percent_met
        if percent is None:
            tone = "$text-muted"
        elif percent >= 95:
            tone = "$text-success"
        elif percent >= 80:
            tone = "$text-warning"
        else:
            tone = "$text-error"
        weight = "bold " if bold else ""
        return Content.assemble(
            (fit(clean(name), 12), weight),
            (f"{format_percent(percent):>7}", weight + tone),
            (f"{item.met:>6}", ""),
            (f"{item.breached:>6}", "$text-error" if item.breached else ""),
            (f"{item.open:>6}", ""),
            (f"{format_span(item.first_response_p50):>8}", ""),
            (f"{format_span(item.first_response_p90):>8}", ""),
        )


class TodayPanel(Vertical):
    """Today's compliance and the first-response sparkline of the last 24 hours."""

    DEFAULT_CSS = """
    TodayPanel { height: auto; }
    TodayPanel > Sparkline { height: 3; margin-top: 1; }
    TodayPanel > .caption { color: $text-muted; height: 1; }
    """

    def __init__(self, zone: tzinfo, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.zone = zone

    def compose(self) -> ComposeResult:
        """The table, the sparkline and its caption."""
        yield TodayTable(self.zone)
        yield Sparkline([], id="sparkline")
        yield Static(Content.styled("first replies, last 24 h", "$text-muted"), classes="caption")

    def on_mount(self) -> None:
        """Title the panel with the local midnight it counts from."""
        self.border_title = "Today"

    def show(
        self, today: Sequence[PolicyToday], times: Sequence[tuple[datetime, int]], now: datetime
    ) -> None:
        """Show the day's figures and the sparkline of first replies."""
        self.query_one(TodayTable).show(today)
        medians = hourly_medians(times, now)
        self.query_one(Sparkline).data = medians
        midnight = local_midnight(now, self.zone).astimezone(self.zone)
        overall = format_percent(overall_percent(today))
        self.border_title = (
            f"Today since {midnight:%H:%M} {midnight.tzname() or ''} · {overall} met"
        )
        peak = max(medians, default=0.0)
        last = next((value for value in reversed(medians) if value), 0.0)
        caption = (
            f"first reply, median per hour, 24 h · peak {format_span(round(peak * 60))}"
            f" · now {format_span(round(last * 60))}"
            if peak
            else "no first replies in the last 24 h"
        )
        self.query_one(".caption", Static).update(Content.styled(caption, "$text-muted"))


class SourcesPanel(Widget):
    """Each source's health: ok, stale, failing or degraded, with lag and last error."""

    DEFAULT_CSS = """
    SourcesPanel { height: auto; }
    """

    def __init__(self, zone: tzinfo, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.zone = zone
        self.sources: tuple[SourceState, ...] = ()
        self.now = datetime.now(UTC)
        self.database_error: str | None = None

    def on_mount(self) -> None:
        """Title the panel."""
        self.border_title = "Sources"

    def show(self, sources: Sequence[SourceState], now: datetime) -> None:
        """Show the sources' last stored health."""
        self.sources = tuple(sources)
        self.now = now
        self.refresh(layout=True)

    def tick(self, now: datetime) -> None:
        """Age the "ok 5s ago" figures."""
        self.now = now
        self.refresh()

    def render(self) -> RenderResult:
        """Two lines per source: name, kind and verdict; then the details."""
        width = max(10, self.size.width)
        lines: list[Content] = []
        if self.database_error:
            lines.append(
                Content.styled(fit("✖ database: " + self.database_error, width), "bold $text-error")
            )
        if not self.sources:
            lines.append(Content.styled("no sources registered yet", "$text-muted"))
        for state in self.sources:
            health = source_health(state, self.now, self.zone)
            glyph = {"ok": "●", "warning": "▲", "error": "✖"}[health.level]
            name = fit(clean(state.name), max(4, width - 12 - len(health.label) - 4), pad=False)
            lines.append(
                Content.assemble(
                    (f"{glyph} ", _HEALTH_STYLES[health.level]),
                    (name, "bold"),
                    (f" {clean(state.kind, 12)}  ", "$text-muted"),
                    (health.label, _HEALTH_STYLES[health.level]),
                )
            )
            lines.append(Content.styled(fit("  " + health.detail, width), "$text-muted"))
        return Content("\n").join(lines)


class BreachLog(OptionList):
    """Breaches, recoveries and dismissals, newest first; Enter opens the conversation."""

    DEFAULT_CSS = """
    BreachLog { height: 1fr; border: none; padding: 0; background: $surface; }
    """

    def __init__(self, zone: tzinfo, *, id: str | None = None) -> None:
        super().__init__(id=id, markup=False)
        self.zone = zone
        self.entries: tuple[LogEntry, ...] = ()
        self._width = 0
        self._now = datetime.now(UTC)

    def _line_width(self) -> int:
        """Cells an entry's line may take (the panel's width, or a guess before layout)."""
        width = self.scrollable_content_region.width
        return width - 1 if width > 10 else 54

    def on_resize(self) -> None:
        """Cut the entries again for the new width."""
        if self.entries and self._line_width() != self._width:
            entries, self.entries = self.entries, ()
            self.show(entries, self._now)

    def show(self, entries: Sequence[LogEntry], now: datetime) -> None:
        """Show new entries; the highlight stays on the same entry when it still exists."""
        entries = tuple(entries)
        width = self._line_width()
        if entries == self.entries and width == self._width:
            return
        self._width = width
        self._now = now
        highlighted = self.highlighted
        kept = self.entries[highlighted] if highlighted is not None and self.entries else None
        self.entries = entries
        self.set_options(self._option(index, entry, now) for index, entry in enumerate(entries))
        if not entries:
            self.add_option(
                Option(
                    Content.styled("nothing breached in the last 24 h", "$text-muted"),
                    disabled=True,
                )
            )
        elif kept is not None and kept in entries:
            self.highlighted = entries.index(kept)

    def _option(self, index: int, entry: LogEntry, now: datetime) -> Option:
        """One entry: time, what happened, to whom; then the engine's reason."""
        glyph, word = LOG_WORDS[entry.kind]
        style = _LOG_STYLES[entry.kind]
        detail = log_detail(entry)
        width = self._width
        when = format_clock(entry.at, self.zone, now)[:9].ljust(9)
        head = f" {glyph} {word:<9} "
        prompt = Content.assemble(
            (when, "$text-muted"),
            (head, style),
            (fit(log_summary(entry), max(1, width - len(when) - len(head)), pad=False), ""),
            "\n",
            (fit("          " + (detail or NOTHING), width, pad=False), "$text-muted"),
        )
        return Option(prompt, id=f"log-{index}")

    @property
    def current(self) -> LogEntry | None:
        """The highlighted entry, if any."""
        index = self.highlighted
        if index is None or not (0 <= index < len(self.entries)):
            return None
        return self.entries[index]
