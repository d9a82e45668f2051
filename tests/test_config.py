"""Tests of the configuration: validation, key paths in errors, secrets, durations."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest

from monitor.config import load_config, parse_config, parse_opening_hours, parse_weekly_at
from monitor.durations import format_duration, parse_duration
from monitor.errors import ConfigError
from monitor.events import Metric, Priority, Status

ROOT = Path(__file__).resolve().parent.parent

ZENDESK = {
    "name": "desk",
    "kind": "zendesk",
    "subdomain": "acme",
    "email": "o@acme.example",
    "token": "${RW_TEST_TOKEN}",
}


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Provide the environment variable the sample sources refer to."""
    monkeypatch.setenv("RW_TEST_TOKEN", "s3cret-token")


def test_sample_config_at_root_is_valid() -> None:
    """The config.toml shipped at the root loads as is."""
    config = load_config(ROOT / "config.toml")
    assert [p.name for p in config.policies] == ["social", "desk"]
    assert config.calendars["office"].opening_hours()[0] == ((540, 750), (810, 1080))


def test_env_reference_is_substituted_and_kept_secret() -> None:
    """${NAME} is replaced from the environment and never shows in repr."""
    config = parse_config({"sources": [ZENDESK]})
    source = config.sources[0]
    assert source.token.get_secret_value() == "s3cret-token"  # type: ignore[attr-defined]
    assert "s3cret-token" not in repr(config)


BAD: list[tuple[str, dict[str, Any], str]] = [
    (
        "unknown-kind",
        {"sources": [{"name": "x", "kind": "zendeks"}]},
        "sources[0].kind: unknown source kind 'zendeks' (known: ",
    ),
    (
        "missing-env",
        {"sources": [{**ZENDESK, "token": "${RW_NOT_SET_ANYWHERE}"}]},
        "sources[0].token: environment variable RW_NOT_SET_ANYWHERE is not set",
    ),
    (
        "duplicate-source",
        {"sources": [ZENDESK, ZENDESK]},
        "sources[1].name: source name 'desk' is already used by sources[0]",
    ),
    (
        "unknown-calendar",
        {"policies": [{"name": "p", "calendar": "ofice", "first_response": "1h"}]},
        "policies[0].calendar: unknown calendar 'ofice' (known: 24x7)",
    ),
    ("unknown-key", {"monitor": {"databse": "sqlite://"}}, "monitor.databse: unknown key"),
    (
        "bad-duration",
        {"policies": [{"name": "p", "first_response": "6 minutes"}]},
        "policies[0].first_response",
    ),
    (
        "bad-timezone",
        {"calendars": {"o": {"timezone": "Mars/Olympus", "hours": {"mon": "09:00-17:00"}}}},
        "calendars.o.timezone: unknown IANA timezone 'Mars/Olympus'",
    ),
    (
        "bad-hours",
        {"calendars": {"o": {"timezone": "UTC", "hours": {"mon": "17:00-09:00"}}}},
        "calendars.o.hours: mon: '17:00-09:00' ends before it starts",
    ),
    (
        "unknown-policy-source",
        {"policies": [{"name": "p", "match": {"sources": ["nope"]}}]},
        "policies[0].match.sources: unknown source 'nope'",
    ),
    ("warn-at-range", {"policies": [{"name": "p", "warn_at": 1.5}]}, "policies[0].warn_at"),
    ("missing-kind", {"sources": [{"name": "x"}]}, "sources[0].kind: required key is missing"),
    ("source-bad-key", {"sources": [{**ZENDESK, "tokn": "x"}]}, "sources[0].tokn: unknown key"),
    (
        "report-target",
        {"reports": {"weekly": {"send_to": ["chat"]}}},
        "reports.weekly.send_to: unknown alert target 'chat'",
    ),
    # A help desk's token must never travel in clear text (plain http only on loopback).
    (
        "zendesk-plain-http",
        {"sources": [{**ZENDESK, "base_url": "http://acme.zendesk.com"}]},
        "sources[0].base_url: must use https:// (the token would travel in clear text)",
    ),
    (
        "freshdesk-plain-http",
        {"sources": [{"name": "fd", "kind": "freshdesk", "subdomain": "acme",
                      "api_key": "${RW_TEST_TOKEN}", "base_url": "http://acme.freshdesk.com"}]},
        "sources[0].base_url: must use https:// (the token would travel in clear text)",
    ),
    (
        "zammad-plain-http",
        {"sources": [{"name": "zm", "kind": "zammad", "url": "http://support.acme.example",
                      "token": "${RW_TEST_TOKEN}"}]},
        "sources[0].url: must use https:// (the token would travel in clear text)",
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), [(d, e) for _, d, e in BAD], ids=[i for i, _, _ in BAD]
)
def test_errors_name_the_key_path(data: dict[str, Any], expected: str) -> None:
    """Every invalid config is one ConfigError that names the key path and the problem."""
    with pytest.raises(ConfigError) as caught:
        parse_config(data, file="config.toml")
    message = str(caught.value)
    assert message.startswith("config.toml: ")
    assert expected in message
    assert "\n" not in message


def test_file_errors_are_one_line(tmp_path: Path) -> None:
    """A missing file and invalid TOML are one-line errors naming the file."""
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[monitor\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(bad)


def test_inline_secret_in_readable_file_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A token written inline in a group/world-readable file gets a warning without the secret."""
    path = tmp_path / "config.toml"
    path.write_text(
        '[[sources]]\nname = "d"\nkind = "zendesk"\nsubdomain = "a"\n'
        'email = "o@a.example"\ntoken = "inline-secret"\n'
    )
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING):
        load_config(path)
    assert "sources[0].token holds a secret inline" in caplog.text
    assert "inline-secret" not in caplog.text
    caplog.clear()
    os.chmod(path, 0o600)
    with caplog.at_level(logging.WARNING):
        load_config(path)
    assert caplog.text == ""


def test_per_priority_targets_and_defaults() -> None:
    """Targets resolve per priority, fall back to default_priority, and pause defaults hold."""
    config = parse_config(
        {
            "policies": [
                {
                    "name": "desk",
                    "first_response": {"urgent": "15m", "normal": "4h"},
                    "resolution": "3d",
                }
            ]
        }
    )
    policy = config.policies[0]
    assert policy.target_seconds(Metric.FIRST_RESPONSE, Priority.URGENT) == 900
    assert policy.target_seconds(Metric.FIRST_RESPONSE, None) == 4 * 3600
    assert policy.target_seconds(Metric.FIRST_RESPONSE, Priority.LOW) is None
    assert policy.target_seconds(Metric.NEXT_RESPONSE, Priority.URGENT) is None
    assert policy.target_seconds(Metric.RESOLUTION, Priority.LOW) == 3 * 86400
    assert policy.pause == {Metric.RESOLUTION: (Status.PENDING, Status.ON_HOLD)}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("6m", 360),
        ("1h30m", 5400),
        ("1d", 86400),
        ("2w", 1209600),
        (45, 45),
        ("1.5h", 5400),
    ],
    ids=["seconds", "minutes", "compound", "day", "weeks", "number", "fraction"],
)
def test_parse_duration(text: Any, seconds: float) -> None:
    """Durations read as people write them."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "6", "6 minutes", "-5m", "0s", True], ids=repr)
def test_parse_duration_rejects(text: Any) -> None:
    """Anything that is not a positive duration with units is refused."""
    if text == "6":
        assert parse_duration(6) == 6  # a bare number is fine; a bare numeric string is not
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (360, "6m"), (5400, "1h 30m"), (90061, "1d 1h"), (-190, "-3m 10s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    """Durations print with at most two units."""
    assert format_duration(seconds) == text


def test_opening_hours_ranges_and_overlap() -> None:
    """Weekday ranges expand; overlaps and repeated days are refused."""
    hours = parse_opening_hours({"mon-wed": "09:00-12:00, 13:00-24:00", "sun": "10:00-11:00"})
    assert hours[2] == ((540, 720), (780, 1440))
    assert 3 not in hours
    assert hours[6] == ((600, 660),)
    with pytest.raises(ValueError, match="overlap"):
        parse_opening_hours({"mon": "09:00-12:00, 11:00-13:00"})
    with pytest.raises(ValueError, match="given twice"):
        parse_opening_hours({"mon-fri": "09:00-17:00", "fri": "10:00-11:00"})


def test_parse_weekly_at() -> None:
    """The weekly report time reads as weekday and local time."""
    assert parse_weekly_at("mon 09:00")[0] == 0
    with pytest.raises(ValueError, match="not like"):
        parse_weekly_at("monday")


def test_disabled_source_tolerates_missing_secret() -> None:
    """A source with enabled = false is validated but a missing ${ENV} is not an error."""
    config = parse_config(
        {"sources": [{**ZENDESK, "token": "${RW_NOT_SET_ANYWHERE}", "enabled": False}]}
    )
    assert config.sources[0].name == "desk"
    assert config.enabled_sources == ()
    with pytest.raises(ConfigError, match=r"sources\[0\]\.subdomain: required key is missing"):
        parse_config(
            {
                "sources": [
                    {
                        "name": "d",
                        "kind": "zendesk",
                        "email": "o@a.example",
                        "token": "${RW_NOT_SET_ANYWHERE}",
                        "enabled": False,
                    }
                ]
            }
        )


ALERT_BAD: list[tuple[str, dict[str, Any], str]] = [
    ("slack-without-url", {"name": "chat", "kind": "slack"}, "a slack target needs url"),
    ("email-incomplete", {"name": "mail", "kind": "email", "smtp_host": "smtp.example"},
     "an email target needs smtp_host, sender and recipients"),
    ("half-escalation", {"name": "chat", "kind": "slack", "url": "https://h.example/x",
                         "escalate_to": "chat"}, "escalate_to and escalate_after go together"),
    ("unknown-escalation", {"name": "chat", "kind": "slack", "url": "https://h.example/x",
                            "escalate_to": "pager", "escalate_after": "10m"},
     "alerts[0].escalate_to: unknown alert target 'pager'"),
    ("bad-quiet-hours", {"name": "chat", "kind": "slack", "url": "https://h.example/x",
                         "quiet_hours": {"hours": "22:00-22:00"}}, "is empty"),
]


@pytest.mark.parametrize(("target", "expected"), [(t, e) for _, t, e in ALERT_BAD],
                         ids=[i for i, _, _ in ALERT_BAD])
def test_alert_target_errors(target: dict[str, Any], expected: str) -> None:
    """Alert targets are checked for the settings their kind needs and their references."""
    with pytest.raises(ConfigError, match=re.escape(expected)):
        parse_config({"alerts": [target]})


def test_quiet_hours_may_run_past_midnight() -> None:
    """Quiet hours from 22:00 to 07:00 read as minutes with the end before the start."""
    config = parse_config({"alerts": [{"name": "chat", "kind": "slack",
                                       "url": "https://h.example/x",
                                       "quiet_hours": {"timezone": "Europe/Paris",
                                                       "hours": "22:00-07:00"}}]})
    quiet = config.alerts[0].quiet_hours
    assert quiet is not None
    assert quiet.minutes() == (1320, 420)
