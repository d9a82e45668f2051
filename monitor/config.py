"""Provides the configuration: TOML read with tomllib, validated into typed pydantic models.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored
setting. ``${NAME}`` in any string is replaced by the environment variable ``NAME``
before validation; a missing variable is a ``ConfigError`` naming the key path. Secrets
are ``SecretStr`` and never printed. See docs/configuration.md for every key.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import stat
import tomllib
from collections.abc import Mapping, Sequence
from datetime import date, time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.connector import SourceSettings
from monitor.durations import Duration
from monitor.errors import ConfigError
from monitor.events import Metric, Priority, Status

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "config.toml"
ALWAYS_OPEN = "24x7"
"""The built-in calendar name: open every second of every day."""

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_KEYS = frozenset(
    {"token", "password", "secret", "client_secret", "api_key", "api_token", "access_token",
     "app_password", "signing_secret", "url"}
)
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _parse_clock_time(hours: str, minutes: str, text: str) -> int:
    value = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or value > 24 * 60:
        raise ValueError(f"{text!r} is not a time of day")
    return value


def parse_opening_hours(spec: Mapping[str, str]) -> dict[int, tuple[tuple[int, int], ...]]:
    """Turn ``{"mon-fri": "09:00-12:30, 13:30-18:00"}`` into weekday -> minute intervals.

    Weekdays are 0 (Monday) to 6; intervals are minutes since local midnight, sorted,
    non-overlapping, with 24:00 allowed as an end. Raises ``ValueError`` on bad input.
    """
    result: dict[int, list[tuple[int, int]]] = {}
    for key, value in spec.items():
        names = key.lower().strip()
        if "-" in names:
            first, _, last = names.partition("-")
            if first not in _WEEKDAYS or last not in _WEEKDAYS:
                raise ValueError(f"{key!r} is not a weekday range like 'mon-fri'")
            lo, hi = _WEEKDAYS.index(first), _WEEKDAYS.index(last)
            if hi < lo:
                raise ValueError(f"{key!r} runs backwards; write it from the earlier day")
            days = list(range(lo, hi + 1))
        elif names in _WEEKDAYS:
            days = [_WEEKDAYS.index(names)]
        else:
            raise ValueError(f"{key!r} is not a weekday (mon, tue, ... sun) or range")
        if not isinstance(value, str):
            raise ValueError(f"{key}: expected a string like '09:00-17:00'")
        intervals: list[tuple[int, int]] = []
        for part in value.split(","):
            if not part.strip():
                continue
            match = _HOURS.match(part)
            if not match:
                raise ValueError(f"{key}: {part.strip()!r} is not an interval like '09:00-17:00'")
            start = _parse_clock_time(match[1], match[2], part)
            end = _parse_clock_time(match[3], match[4], part)
            if end <= start:
                raise ValueError(f"{key}: {part.strip()!r} ends before it starts")
            intervals.append((start, end))
        for day in days:
            if day in result:
                raise ValueError(f"{key}: {_WEEKDAYS[day]} is given twice")
            merged = sorted(intervals)
            for (_, end), (start, _) in itertools.pairwise(merged):
                if start < end:
                    raise ValueError(f"{key}: opening intervals overlap")
            result[day] = merged
    return {day: tuple(intervals) for day, intervals in result.items()}


class HolidaysConfig(_Model):
    """Days a business-hours calendar is closed all day."""

    country: str | None = None
    """ISO 3166 country code whose public holidays apply (``"US"``), via ``holidays``."""
    subdivision: str | None = None
    """A state or province code within ``country`` (``"CA"``)."""
    dates: tuple[date, ...] = ()
    """Explicit closed dates, as ``"2026-12-24"``."""

    @field_validator("dates", mode="before")
    @classmethod
    def _dates(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [date.fromisoformat(v) if isinstance(v, str) else v for v in value]
        return value


class CalendarConfig(_Model):
    """A business-hours calendar: timezone, opening intervals per weekday, holidays."""

    timezone: str
    """An IANA timezone name (``"America/New_York"``); opening hours are its wall clock."""
    hours: dict[str, str]
    """Weekday or range -> intervals, e.g. ``{ mon-fri = "09:00-12:30, 13:30-18:00" }``."""
    holidays: HolidaysConfig = HolidaysConfig()
    """Closed days: a country's (and subdivision's) public holidays and explicit dates."""

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown IANA timezone {value!r}") from err
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: dict[str, str]) -> dict[str, str]:
        if not parse_opening_hours(value):
            raise ValueError("a business-hours calendar needs at least one opening interval")
        return value

    def opening_hours(self) -> dict[int, tuple[tuple[int, int], ...]]:
        """Weekday (0 = Monday) -> opening intervals in minutes since local midnight."""
        return parse_opening_hours(self.hours)


class MatchConfig(_Model):
    """Which conversations a policy covers; every given key must match (empty matches all)."""

    sources: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    priorities: tuple[Priority, ...] = ()
    groups: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    """Matches when the conversation has any of these tags."""


Target = Duration | dict[Priority, Duration]


def _default_pause() -> dict[Metric, tuple[Status, ...]]:
    return {Metric.RESOLUTION: (Status.PENDING, Status.ON_HOLD)}


class PolicyConfig(_Model):
    """An SLA policy: which conversations, and per metric the target (SLA.md §3)."""

    name: str
    match: MatchConfig = MatchConfig()
    calendar: str = ALWAYS_OPEN
    """A calendar name from ``[calendars]``, or ``"24x7"``."""
    first_response: Target | None = None
    next_response: Target | None = None
    resolution: Target | None = None
    warn_at: float = Field(default=0.75, gt=0, lt=1)
    """Fraction of the target at which a running clock becomes ``at_risk``."""
    count_bots: bool = False
    """Whether a bot's public message stops a response clock."""
    pause: dict[Metric, tuple[Status, ...]] = Field(default_factory=_default_pause)
    """Statuses that pause each metric; by default resolution pauses in pending and on_hold."""
    default_priority: Priority = Priority.NORMAL
    """The priority used for per-priority targets while a conversation has none."""

    def target_seconds(self, metric: Metric, priority: Priority | None) -> int | None:
        """The metric's target in counted seconds for ``priority``, or None if it has none."""
        target: float | dict[Priority, float] | None = getattr(self, str(metric))
        if target is None:
            return None
        if isinstance(target, dict):
            chosen = target.get(priority or self.default_priority)
            return None if chosen is None else round(chosen)
        return round(target)


AlertEvent = Literal["at_risk", "breached", "recovered", "source_down", "source_up"]
AlertKind = Literal["slack", "teams", "discord", "mattermost", "google_chat", "webhook", "email"]
_URL_KINDS = frozenset({"slack", "teams", "discord", "mattermost", "google_chat", "webhook"})


class QuietHoursConfig(_Model):
    """Hours in which a target gets no messages; what is decided meanwhile waits for the end."""

    timezone: str = "UTC"
    """IANA timezone of ``hours``."""
    hours: str
    """A local interval such as ``"22:00-07:00"`` (it may run past midnight)."""

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return CalendarConfig._timezone(value)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        match = _HOURS.match(value)
        if not match:
            raise ValueError(f"{value!r} is not an interval like '22:00-07:00'")
        start = _parse_clock_time(match[1], match[2], value)
        end = _parse_clock_time(match[3], match[4], value)
        if start == end:
            raise ValueError(f"{value!r} is empty")
        return value

    def minutes(self) -> tuple[int, int]:
        """(start, end) in minutes since local midnight; end < start runs past midnight."""
        match = _HOURS.match(self.hours)
        assert match is not None
        return (_parse_clock_time(match[1], match[2], self.hours),
                _parse_clock_time(match[3], match[4], self.hours))


class AlertTargetConfig(_Model):
    """Where alerts go: one chat webhook, a generic signed webhook, or a mailbox."""

    name: str
    kind: AlertKind
    url: SecretStr | None = None
    """The secret webhook URL (every kind but email); give it as ``"${SLACK_WEBHOOK_URL}"``."""
    on: tuple[AlertEvent, ...] = ("at_risk", "breached", "recovered", "source_down", "source_up")
    """Which transitions this target wants."""
    policies: tuple[str, ...] = ()
    """Only clocks of these policies (empty: all)."""
    sources: tuple[str, ...] = ()
    """Only these sources (empty: all)."""
    priorities: tuple[Priority, ...] = ()
    """Only conversations of these priorities (empty: all)."""
    group_window: Duration = 30.0
    """Alerts decided within this window go out as one message."""
    repeat_every: Duration | None = None
    """Repeat a breach alert this often while the breach stays open (default: never)."""
    escalate_to: str | None = None
    """Another target that gets a breach still open after ``escalate_after``."""
    escalate_after: Duration | None = None
    quiet_hours: QuietHoursConfig | None = None
    secret: SecretStr | None = None
    """webhook: the HMAC-SHA256 signing key (``X-Replywatch-Signature``)."""
    smtp_host: str | None = None
    """email: the SMTP server."""
    smtp_port: int | None = None
    """email: default 587 with starttls, 465 with tls, 25 with none."""
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str | None = None
    """email: the From address."""
    recipients: tuple[str, ...] = ()
    """email: the To addresses."""

    @model_validator(mode="after")
    def _kind_settings(self) -> AlertTargetConfig:
        if self.kind in _URL_KINDS and self.url is None:
            raise ValueError(f"a {self.kind} target needs url")
        if self.kind == "email" and not (self.smtp_host and self.sender and self.recipients):
            raise ValueError("an email target needs smtp_host, sender and recipients")
        if (self.escalate_to is None) != (self.escalate_after is None):
            raise ValueError("escalate_to and escalate_after go together")
        return self


class WeeklyReportConfig(_Model):
    """When the weekly report is made and where it goes."""

    at: str = "mon 09:00"
    """Weekday and local time in ``[monitor].timezone``."""
    send_to: tuple[str, ...] = ()
    """Alert target names the report is sent to."""
    folder: str = "reports"
    """Where the report files are written."""

    @field_validator("at")
    @classmethod
    def _at(cls, value: str) -> str:
        parse_weekly_at(value)
        return value


class ReportsConfig(_Model):
    """Scheduled reports."""

    weekly: WeeklyReportConfig | None = None


class MonitorConfig(_Model):
    """Settings of the monitor process itself."""

    database: str = "sqlite:///replywatch.db"
    """SQLAlchemy URL: ``sqlite:///path.db`` or ``postgresql+psycopg://user@host/db``."""
    timezone: str = "UTC"
    """The team's timezone: report weeks and the board's "today"."""
    lookback: Duration = 7 * 86400.0
    """How far back a source with no stored cursor starts (``"7d"``)."""

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return CalendarConfig._timezone(value)


class ClusterConfig(_Model):
    """How workers sharing one PostgreSQL store split the sources (docs/deployment.md)."""

    enabled: bool = True
    """On PostgreSQL, poll only the sources whose lease this process holds; SQLite ignores it."""
    lease_timeout: Duration = Field(default=15.0, ge=1.0, le=3600.0)
    """A source's lease ends this long after its owner's last heartbeat (every third of it)."""


class Config(_Model):
    """The whole validated configuration."""

    monitor: MonitorConfig = MonitorConfig()
    calendars: dict[str, CalendarConfig] = Field(default_factory=dict)
    sources: tuple[SourceSettings, ...] = ()
    policies: tuple[PolicyConfig, ...] = ()
    alerts: tuple[AlertTargetConfig, ...] = ()
    reports: ReportsConfig = ReportsConfig()
    cluster: ClusterConfig = ClusterConfig()

    @property
    def enabled_sources(self) -> tuple[SourceSettings, ...]:
        """The sources to poll: every source not marked ``enabled = false``."""
        return tuple(source for source in self.sources if source.enabled)

    def source(self, name: str) -> SourceSettings:
        """The settings of the source called ``name`` (``KeyError`` if none)."""
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)

    def calendar(self, name: str) -> CalendarConfig | None:
        """The named calendar; None for the built-in ``24x7``."""
        return None if name == ALWAYS_OPEN else self.calendars[name]


def format_path(loc: Sequence[str | int]) -> str:
    """Render a key path the way TOML readers think of it: ``sources[2].token``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _first_error(err: ValidationError, prefix: Sequence[str | int] = ()) -> tuple[str, str]:
    detail = err.errors()[0]
    loc = [p for p in detail["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    message = detail["msg"]
    if detail["type"] == "extra_forbidden":
        message = "unknown key"
    elif detail["type"] == "missing":
        message = "required key is missing"
    message = message.removeprefix("Value error, ")
    return format_path([*prefix, *loc]), message


def _interpolate(
    value: Any, loc: list[str | int], inline: list[str], *, strict: bool = True
) -> Any:
    """Replace ``${NAME}`` references; remember secrets written inline.

    With ``strict=False`` (a disabled source) a missing variable is left as written.
    """
    if isinstance(value, dict):
        return {k: _interpolate(v, [*loc, k], inline, strict=strict) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, [*loc, i], inline, strict=strict) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    key = next((p for p in reversed(loc) if isinstance(p, str)), "")
    is_secret = key in _SECRET_KEYS and not (key == "url" and loc[:1] != ["alerts"])
    if is_secret and value and not _ENV_REF.search(value):
        inline.append(format_path(loc))

    def replace(match: re.Match[str]) -> str:
        name = match[1]
        if name not in os.environ:
            if not strict:
                return match[0]
            raise ConfigError(f"environment variable {name} is not set", path=format_path(loc))
        return os.environ[name]

    return _ENV_REF.sub(replace, value)


def _validate_sources(raw: Any) -> tuple[SourceSettings, ...]:
    from connectors import registry

    if not isinstance(raw, list):
        raise ConfigError("expected an array of tables ([[sources]])", path="sources")
    kinds = registry()
    settings: list[SourceSettings] = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ConfigError("expected a table", path=f"sources[{index}]")
        kind = entry.get("kind")
        if kind is None:
            raise ConfigError("required key is missing", path=f"sources[{index}].kind")
        if kind not in kinds:
            known = ", ".join(sorted(kinds))
            raise ConfigError(
                f"unknown source kind {kind!r} (known: {known})", path=f"sources[{index}].kind"
            )
        try:
            settings.append(kinds[kind].settings_model.model_validate(entry))
        except ValidationError as err:
            path, message = _first_error(err, ["sources", index])
            raise ConfigError(message, path=path) from None
    return tuple(settings)


def _check_references(config: Config) -> None:
    names: dict[str, int] = {}
    for index, source in enumerate(config.sources):
        if source.name in names:
            raise ConfigError(
                f"source name {source.name!r} is already used by sources[{names[source.name]}]",
                path=f"sources[{index}].name",
            )
        names[source.name] = index
    seen_policies: set[str] = set()
    for index, policy in enumerate(config.policies):
        if policy.name in seen_policies:
            raise ConfigError(f"policy name {policy.name!r} is used twice",
                              path=f"policies[{index}].name")
        seen_policies.add(policy.name)
        if policy.calendar != ALWAYS_OPEN and policy.calendar not in config.calendars:
            known = ", ".join([ALWAYS_OPEN, *sorted(config.calendars)])
            raise ConfigError(f"unknown calendar {policy.calendar!r} (known: {known})",
                              path=f"policies[{index}].calendar")
        for source_name in policy.match.sources:
            if source_name not in names:
                raise ConfigError(f"unknown source {source_name!r}",
                                  path=f"policies[{index}].match.sources")
    if ALWAYS_OPEN in config.calendars:
        raise ConfigError(f"{ALWAYS_OPEN!r} is built in and cannot be redefined",
                          path=f"calendars.{ALWAYS_OPEN}")
    targets: set[str] = set()
    for index, target in enumerate(config.alerts):
        if target.name in targets:
            raise ConfigError(f"alert name {target.name!r} is used twice",
                              path=f"alerts[{index}].name")
        targets.add(target.name)
    for index, target in enumerate(config.alerts):
        if target.escalate_to is not None and target.escalate_to not in targets:
            raise ConfigError(f"unknown alert target {target.escalate_to!r}",
                              path=f"alerts[{index}].escalate_to")
        for policy_name in target.policies:
            if policy_name not in seen_policies:
                raise ConfigError(f"unknown policy {policy_name!r}",
                                  path=f"alerts[{index}].policies")
        for source_name in target.sources:
            if source_name not in names:
                raise ConfigError(f"unknown source {source_name!r}",
                                  path=f"alerts[{index}].sources")
    weekly = config.reports.weekly
    if weekly is not None:
        for name in weekly.send_to:
            if name not in targets:
                raise ConfigError(f"unknown alert target {name!r}", path="reports.weekly.send_to")


def parse_config(data: Mapping[str, Any], *, file: str = "") -> Config:
    """Validate already-parsed TOML data; raise ``ConfigError`` naming the key path."""
    inline: list[str] = []
    try:
        raw = dict(data)
        raw_sources = raw.pop("sources", [])
        raw = _interpolate(raw, [], inline)
        if isinstance(raw_sources, list):
            raw_sources = [
                _interpolate(entry, ["sources", index], inline,
                             strict=not (isinstance(entry, dict) and entry.get("enabled") is False))
                for index, entry in enumerate(raw_sources)
            ]
        sources = _validate_sources(raw_sources)
        config = Config.model_validate(raw)
        config = config.model_copy(update={"sources": sources})
        _check_references(config)
    except ConfigError as err:
        raise ConfigError(err.problem, path=err.path, file=file) from None
    except ValidationError as err:
        path, message = _first_error(err)
        raise ConfigError(message, path=path, file=file) from None
    if inline:
        _warn_if_readable(file, inline)
    return config


def _warn_if_readable(file: str, inline: list[str]) -> None:
    if not file:
        return
    try:
        mode = os.stat(file).st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "%s: %s holds a secret inline and the file is readable by others; "
            "use ${ENV} references or chmod 600 %s", file, inline[0], file,
        )


def config_path(explicit: str | None) -> Path:
    """The config file to read: ``--config``, else ``$REPLYWATCH_CONFIG``, else ./config.toml."""
    return Path(explicit or os.environ.get("REPLYWATCH_CONFIG") or DEFAULT_CONFIG)


def load_config(path: Path) -> Config:
    """Read and validate a config file; every failure is a one-line ``ConfigError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read: {err.__class__.__name__}", file=str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"not valid TOML: {err}", file=str(path)) from None
    return parse_config(data, file=str(path))


def parse_weekly_at(text: str) -> tuple[int, time]:
    """Parse ``"mon 09:00"`` into (weekday 0-6, local time); raise ``ValueError`` if bad."""
    day, _, clock = text.strip().lower().partition(" ")
    if day[:3] not in _WEEKDAYS or not clock:
        raise ValueError(f"{text!r} is not like 'mon 09:00'")
    return _WEEKDAYS.index(day[:3]), time.fromisoformat(clock.strip())
