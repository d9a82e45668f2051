"""Tests of the domain types: aware UTC only, the JSON Lines form, terminal-safe text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from monitor.events import Actor, Event, EventKind, event_from_json, parse_instant
from monitor.text import sanitize, snippet

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_naive_datetime_is_refused() -> None:
    """An event with a naive timestamp cannot exist."""
    with pytest.raises(ValueError, match="has no timezone"):
        Event("s", "c", "1", datetime(2026, 11, 23, 9), EventKind.STATUS, status="open")  # type: ignore[arg-type]


def test_offsets_are_normalized_to_utc() -> None:
    """A +02:00 time becomes the same instant in UTC."""
    event = Event(
        "s",
        "c",
        "1",
        datetime(2026, 11, 23, 11, tzinfo=timezone(timedelta(hours=2))),
        EventKind.MESSAGE,
        actor=Actor.CUSTOMER,
    )
    assert event.at == AT
    assert event.at.tzinfo is UTC
    assert event.public is True


def test_json_round_trip() -> None:
    """to_json and event_from_json are inverses, fields included."""
    event = Event(
        "s", "c", "1", AT, EventKind.UPDATE, fields={"tags": ["vip", "b"], "priority": "high"}
    )
    again = event_from_json(event.to_json())
    assert again == event
    assert again.fields["tags"] == ("vip", "b")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            {
                "source": "s",
                "conversation": "c",
                "id": "1",
                "at": "2026-11-23T09:00:00",
                "kind": "status",
                "status": "open",
            },
            "has no timezone",
        ),
        (
            {"source": "s", "conversation": "c", "id": "1", "at": "yesterday", "kind": "status"},
            "not an ISO 8601 time",
        ),
        (
            {
                "source": "s",
                "conversation": "c",
                "id": "1",
                "at": "2026-11-23T09:00:00Z",
                "kind": "chat",
            },
            "'chat' is not a valid EventKind",
        ),
        (
            {"source": "s", "conversation": "c", "at": "2026-11-23T09:00:00Z", "kind": "status"},
            "missing 'id'",
        ),
        (
            {
                "source": "s",
                "conversation": "c",
                "id": "1",
                "at": "2026-11-23T09:00:00Z",
                "kind": "message",
            },
            "has no actor",
        ),
        (
            {
                "source": "s",
                "conversation": "c",
                "id": "1",
                "at": "2026-11-23T09:00:00Z",
                "kind": "message",
                "actor": "customer",
                "public": "yes",
            },
            "'public' must be true or false",
        ),
        (
            {
                "source": "s",
                "conversation": "c",
                "id": "1",
                "at": "2026-11-23T09:00:00Z",
                "kind": "status",
                "status": "open",
                "colour": "red",
            },
            "unknown key 'colour'",
        ),
        ([1, 2], "must be a JSON object"),
    ],
    ids=[
        "naive",
        "not-a-time",
        "bad-kind",
        "no-id",
        "no-actor",
        "bad-public",
        "unknown-key",
        "array",
    ],
)
def test_bad_json_events_are_refused(data: Any, problem: str) -> None:
    """Each malformed event line gives a ValueError that says what is wrong."""
    with pytest.raises(ValueError, match=problem):
        event_from_json(data)


def test_sort_key_breaks_ties_by_kind_then_id() -> None:
    """At the same instant: status < update < message, then id."""
    message = Event("s", "c", "a", AT, EventKind.MESSAGE, actor=Actor.AGENT)
    status = Event("s", "c", "z", AT, EventKind.STATUS, status="solved")
    update = Event("s", "c", "m", AT, EventKind.UPDATE)
    assert sorted([message, update, status], key=lambda e: e.sort_key) == [status, update, message]


def test_parse_instant_accepts_z() -> None:
    """ISO 8601 with Z parses to aware UTC."""
    assert parse_instant("2026-11-23T09:00:00Z") == AT


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("a\x1b[31mred", "a[31mred"),
        ("evil\u202eexe.txt", "evilexe.txt"),
        ("bell\x07", "bell"),
        ("c1\x9bx", "c1x"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("[bold]x[/]", "[bold]x[/]"),
    ],
    ids=["ansi", "bidi", "bell", "c1", "keeps-tab-newline", "markup-kept-literal"],
)
def test_sanitize(text: str, clean: str) -> None:
    """Control and bidi characters are removed; everything else stays literal."""
    assert sanitize(text) == clean


def test_snippet_is_one_line_and_bounded() -> None:
    """A snippet folds lines and cuts with an ellipsis."""
    assert snippet("line one\nline two\u202e", 12) == "line one li…"
    assert snippet(None) == ""
