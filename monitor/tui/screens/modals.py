"""Provides the board's modals: help, dismissal reason, and the filter picker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from monitor.storage.board import Facets, QueueFilter
from monitor.tui.keys import SECTIONS
from monitor.tui.render import STATE_LABELS, STATE_ORDER, clean, fit


class HelpModal(ModalScreen[None]):
    """Every key of the board, section by section."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        """One scrolling column of key lines."""
        lines: list[Content] = []
        for title, keys in SECTIONS:
            if lines:
                lines.append(Content(""))
            lines.append(Content.styled(title, "bold $text-accent"))
            for key in keys:
                lines.append(
                    Content.assemble((f"  {key.label:<16}", "bold"), (key.help, "$text-muted"))
                )
        lines.append(Content(""))
        lines.append(
            Content.styled(
                "Every action is also in the command palette (Ctrl+P). Esc closes this.",
                "$text-muted italic",
            )
        )
        with VerticalScroll(id="help-body", classes="modal-body") as body:
            body.border_title = "Keys"
            yield Static(Content("\n").join(lines), id="help-text")

    def action_close(self) -> None:
        """Close the help."""
        self.dismiss(None)


class DismissModal(ModalScreen[str | None]):
    """Ask why a conversation needs no reply; the reason is stored with the dismissal."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, who: str, about: str) -> None:
        super().__init__()
        self.who = who
        self.about = about

    def compose(self) -> ComposeResult:
        """The conversation, the reason field, and what Enter and Esc do."""
        with Vertical(id="dismiss-body", classes="modal-body") as body:
            body.border_title = "Dismiss"
            yield Static(
                Content.assemble(
                    ("Dismiss the conversation with ", ""),
                    (clean(self.who, 60) or "this customer", "bold"),
                    ("?", ""),
                    "\n",
                    (clean(self.about, 200), "$text-muted italic"),
                    "\n\n",
                    ("Its running clocks are cancelled and kept out of the figures; ", ""),
                    ("the dismissal is stored with your name and reason, and u undoes it.", ""),
                ),
                id="dismiss-text",
            )
            yield Input(
                placeholder="why it needs no reply (spam, thanks-only, duplicate…)",
                id="dismiss-reason",
                max_length=500,
            )
            yield Static("", id="dismiss-error")
            yield Static(
                Content.styled("Enter dismisses · Esc cancels", "$text-muted"), id="dismiss-keys"
            )

    def on_mount(self) -> None:
        """Type the reason straight away."""
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Dismiss with the reason, which must not be empty."""
        reason = clean(event.value).strip()
        if not reason:
            self.query_one("#dismiss-error", Static).update(
                Content.styled("A reason is required: it is what the audit shows.", "$text-error")
            )
            return
        self.dismiss(reason)

    def action_cancel(self) -> None:
        """Close without dismissing anything."""
        self.dismiss(None)


_DIMENSIONS: tuple[tuple[str, str], ...] = (
    ("source", "Source"),
    ("kind", "Kind of source"),
    ("channel", "Channel"),
    ("priority", "Priority"),
    ("assignee", "Assignee"),
    ("group", "Group"),
    ("state", "State"),
)
_ANY = "\x00any"
_NONE = "\x00none"


class FilterModal(ModalScreen[tuple[str, str | None] | None]):
    """Pick a filter in two steps: what to filter on, then the value (or any)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back")]

    def __init__(self, filters: QueueFilter, facets: Facets) -> None:
        super().__init__()
        self.filters = filters
        self.facets = facets
        self.dimension: str | None = None
        self._choices: dict[str, str | None] = {}

    def compose(self) -> ComposeResult:
        """One list: the dimensions first, then the values of the chosen one."""
        with Vertical(id="filter-body", classes="modal-body") as body:
            body.border_title = "Filter"
            yield OptionList(*self._dimension_options(), id="filter-options", markup=False)
            yield Static(
                Content.styled("Enter chooses · Esc goes back", "$text-muted"), id="filter-keys"
            )

    def on_mount(self) -> None:
        """Start on the first dimension."""
        options = self.query_one(OptionList)
        options.highlighted = 0
        options.focus()

    def _dimension_options(self) -> list[Option]:
        """The dimensions, each with its current value."""
        options = []
        for name, title in _DIMENSIONS:
            value = getattr(self.filters, name)
            shown = "any" if value is None else self._label(name, value)
            options.append(
                Option(Content.assemble((fit(title, 16), "bold"), (shown, "$text-muted")), id=name)
            )
        return options

    def _values(self, name: str) -> Sequence[str]:
        """The values ``name`` can take among open conversations."""
        if name == "state":
            return STATE_ORDER
        plural = {
            "source": self.facets.sources,
            "kind": self.facets.kinds,
            "channel": self.facets.channels,
            "priority": self.facets.priorities,
            "assignee": self.facets.assignees,
            "group": self.facets.groups,
        }
        return plural[name]

    @staticmethod
    def _label(name: str, value: str) -> str:
        """A value as the list shows it."""
        if name == "state":
            return STATE_LABELS.get(value, value)
        return clean(value, 60) or "none"

    def _show_values(self, name: str) -> None:
        """Replace the list with the values of ``name``: any, none (if optional), each."""
        self.dimension = name
        choices: list[tuple[str, str | None, Content]] = [
            (_ANY, None, Content.styled("any", "italic"))
        ]
        if name in ("channel", "priority", "assignee", "group"):
            choices.append((_NONE, "", Content.styled("none (not set)", "italic")))
        for index, value in enumerate(self._values(name)):
            choices.append((f"v{index}", value, Content(self._label(name, value))))
        self._choices = {option_id: value for option_id, value, _ in choices}
        options = self.query_one(OptionList)
        options.set_options(Option(prompt, id=option_id) for option_id, _, prompt in choices)
        current = getattr(self.filters, name)
        options.highlighted = next(
            (index for index, (_, value, _) in enumerate(choices) if value == current), 0
        )
        self.query_one("#filter-body").border_title = f"Filter · {dict(_DIMENSIONS)[name]}"

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Go to the values of a dimension, or return the chosen value."""
        event.stop()
        option_id = event.option.id
        if option_id is None:
            return
        if self.dimension is None:
            self._show_values(option_id)
        else:
            self.dismiss((self.dimension, self._choices[option_id]))

    def action_back(self) -> None:
        """Back to the dimensions, or close."""
        if self.dimension is None:
            self.dismiss(None)
            return
        self.dimension = None
        options = self.query_one(OptionList)
        options.set_options(self._dimension_options())
        options.highlighted = 0
        self.query_one("#filter-body").border_title = "Filter"
