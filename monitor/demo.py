"""Provides the demo: a seeded support-traffic model driving the fake APIs, and its environment.

The model plans every conversation as plain data first (``Action`` values: a ticket or
a mention, the bot answer, the internal note, the reply, the follow-up, the status
changes) and only then writes the plan into the fakes' worlds, each through a small
adapter of its kind (a ``DeskSource`` for help desks, a ``SocialSource`` for social
networks) that knows its world's methods and nothing of traffic. Arrivals follow a
non-homogeneous Poisson process whose hourly rate depends on the New York wall clock
(office hours busy, nights and weekends quiet); reply delays are log-normal, so most
answers come in minutes and a realistic tail comes late. One ``random.Random`` seeded
from ``seed`` drives everything: the same seed and sources write the same history.

Every built-in kind has an adapter (``DEMO_SOURCES``; ``replywatch demo --sources``
picks them, ``DEFAULT_SOURCES`` is a help desk and two social networks). Each source
gets its own traffic, scaled by its ``volume``: a source whose real API would make a
week's backfill slow or impossible (Freshdesk's and Help Scout's per-minute budgets and
Intercom's 10-second windows against one request per conversation, X's 800-mention
reach, a GitHub repository's scale) sees a smaller team's week rather than a slow start.

``generate_history`` writes a past window and keeps later steps as pending actions;
``run_live`` writes new arrivals and pending steps as real time passes. A few "opener"
conversations per source (unanswered mentions near their 6-minute target, an urgent
ticket near its first-response target) are planted just before the demo opens, so
at-risk and breached clocks show up in its first minutes. Desk openers are planted at
the end of the history (their targets fall 1 to 15 minutes later, which covers the
backfill): a ticket backdated after a connector's first poll would sit behind its
cursor and never be seen. Social openers are planted at the end of the history and,
on networks that number what arrives late after what they have already served
(Mastodon), again when going live; elsewhere (Bluesky, X, Reddit) a reader's floor is a
time, and a post backdated below it is never seen (``SocialSource.late_arrivals_seen``).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import heapq
import itertools
import logging
import math
import random
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo

import holidays
from aiohttp import web

from connectors.fakes import (
    bluesky,
    freshdesk,
    github,
    helpscout,
    intercom,
    mastodon,
    reddit,
    zammad,
    zendesk,
)
from connectors.fakes import x as x_fake
from connectors.fakes._base import FakeControls, serve
from monitor.config import Config, parse_config
from monitor.durations import format_duration
from monitor.events import require_utc

log = logging.getLogger(__name__)

TIMEZONE = ZoneInfo("America/New_York")
"""The simulated team's wall clock: the traffic profile follows it."""
SOCIAL_TARGET = 6 * 60
"""Seconds: the social policy's first and next response target."""
FIRST_RESPONSE_TARGETS: dict[str, int] = {
    "urgent": 15 * 60, "high": 3600, "normal": 4 * 3600, "low": 8 * 3600,
}
"""Seconds per priority: the desk policy's first response targets."""
NEXT_RESPONSE_TARGETS: dict[str, int] = {
    "urgent": 30 * 60, "high": 2 * 3600, "normal": 8 * 3600, "low": 86400,
}
"""Seconds per priority: the desk policy's next response targets."""
RESOLUTION_TARGETS: dict[str, int] = {
    "urgent": 4 * 3600, "high": 86400, "normal": 3 * 86400, "low": 5 * 86400,
}
"""Seconds per priority: the desk policy's resolution targets."""

BRAND = "acme"
"""The simulated company; sources are named ``acme-<kind>``."""
FAKE_EMAIL = "ops@acme.example"
FAKE_TOKEN = "fake-token"  # the fakes' own credential, not a secret of anyone
FAKE_APP_PASSWORD = "abcd-efgh-ijkl-mnop"  # Bluesky's app-password shape, fake as well

Stream = Literal["desk", "social"]
Role = Literal["customer", "agent", "bot"]
_T = TypeVar("_T")

# Tickets (desk) and mentions (social) per hour, by New York hour of day, on a working
# day; weekends and US public holidays scale them down.
_DESK_PER_HOUR = (2, 2, 2, 2, 2, 2, 2, 6, 14, 34, 36, 32, 26, 32, 34, 32, 28, 18, 8, 8, 8, 4, 4, 4)
_SOCIAL_PER_HOUR = (3, 3, 3, 3, 3, 3, 3, 8, 8, 16, 18, 17, 15, 16, 17, 16, 14, 12, 12, 12, 12, 12,
                    6, 6)
_QUIET_DAY_FACTOR: dict[Stream, float] = {"desk": 0.2, "social": 0.6}

_AGENTS = ("Kim Alvarez", "Sam Okafor", "Priya Raman", "Jonas Berg", "Aiko Tanaka",
           "Luis Moreno", "Fatima Zahra", "Noah Fischer")
_FIRST_NAMES = ("Ava", "Ben", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines",
                "Jamal", "Keiko", "Liam", "Maya", "Nikolai", "Olivia", "Pedro", "Quinn", "Rosa",
                "Sven", "Tara", "Umar", "Vera", "Wei", "Ximena", "Yusuf", "Zoe", "Amara",
                "Bruno", "Carmen", "Dev", "Emeka", "Freya", "Gustavo", "Hana", "Ivan", "Julia")
_LAST_NAMES = ("Smith", "Nguyen", "Garcia", "Müller", "Kowalski", "Haddad", "Johansson",
               "O'Brien", "Rossi", "Kim", "Patel", "Silva", "Dubois", "Novak", "Yilmaz", "Cohen",
               "Andersen", "Mensah", "Ito", "Fernández", "Walsh", "Papadopoulos", "Chen",
               "Ivanova", "Okoro", "Larsen", "Costa", "Schmidt", "Reyes", "Brown")
_DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "corp.example")

# Public text is hostile now and then; the product must show it inert, never crash on it.
_LONG_LINE = "Please read this carefully " + "A" * 473
_HOSTILE_NAMES = ("[bold red]Mallory[/]", "Robert'); DROP TABLE tickets;--",
                  "\u202egnp.exe Eve", "<img src=x onerror=alert(1)> Trudy")

# (subject, body, group) for the desk; {n} becomes an order or invoice number.
_DESK_TOPICS: tuple[tuple[str, str, str], ...] = (
    ("The printer is on fire", "Our office printer started smoking right after the firmware "
     "update you pushed last night. It is now, technically, on fire. What do we do?",
     "technical"),
    ("Charged twice for order #{n}", "My card statement shows two charges for order #{n}. "
     "Please refund the duplicate.", "billing"),
    ("Can't log in", "Since this morning the login page says my password is wrong, and the "
     "reset email never arrives.", "accounts"),
    ("Refund request for #{n}", "The item arrived broken. I'd like a refund rather than a "
     "replacement, please.", "billing"),
    ("Where is my order #{n}?", "Tracking has said 'label created' for six days now.",
     "billing"),
    ("Two-factor code lost", "I got a new phone and can no longer receive my 2FA codes.",
     "accounts"),
    ("API returns 500 on /v2/orders", "Every call to /v2/orders fails with HTTP 500 since "
     "14:00 UTC. Our checkout is down!", "technical"),
    ("Invoice copy for March", "Could you send me a PDF copy of invoice {n}? Accounting "
     "needs it.", "billing"),
    ("Cancel my subscription", "Please cancel my plan at the end of this billing period.",
     "accounts"),
    ("App crashes on startup", "The Android app closes immediately after the splash screen "
     "(version 5.2.{n}).", "technical"),
    ("Feature request: dark mode", "Any plans for a dark mode? My eyes would thank you.",
     "technical"),
    ("Change of billing address", "We moved offices; please update the address on our "
     "invoices.", "billing"),
)
_DESK_HOSTILE: tuple[tuple[str, str, str], ...] = (
    ("[bold]URGENT[/bold] account locked", "[red]Help![/red] My account is locked and "
     "[link=https://evil.example]this link[/link] is what your email said.", "accounts"),
    ("<script>alert('pwned')</script>", "<script>document.location='https://evil.example'"
     "</script> refund please", "billing"),
    ("Invoice \u202efdp.exe", "Attached the file \u202efdp.exe as requested \x1b[2J\x1b[31m",
     "billing"),
    ("Complaint", _LONG_LINE, "technical"),
)
_DESK_FOLLOW_UPS = ("Thanks, but it still doesn't work.", "I tried that; same error.",
                    "Any update on this?", "Here is the screenshot you asked for.",
                    "That fixed it, but now something else broke.",
                    "[bold]STILL[/bold] waiting <b>!!!</b>")
_DESK_REPLIES = ("Hi {name}, thanks for reaching out. I've looked into this and {fix}",
                 "Hello {name}, sorry about the trouble! {fix}",
                 "Hi {name}, good news: {fix}")
_DESK_FIXES = ("the duplicate charge has been refunded.", "your password reset link is on "
               "its way.", "could you send us a screenshot of the error?", "we've escalated "
               "this to our engineers.", "please try again now; it should work.",
               "the fire department is the right first call, then us.")
_INTERNAL_NOTES = ("Customer is on the enterprise plan, check contract.", "Looks like the "
                   "same bug as last week, linking.", "Asked billing to confirm the charge.",
                   "Do not promise a date yet.")
_BOT_ANSWERS = ("These articles may help: 'Resetting your password', 'Refund policy'.",
                "While you wait: our status page shows all systems operational.")

_MENTIONS = ("is your app down? I can't log in", "my order #{n} still hasn't shipped",
             "love the new update, great work!", "your printer set my desk on fire 🔥",
             "charged twice again?? order #{n}", "how do I export my data?",
             "third email, no answer. What's going on?", "is there a student discount?",
             "the website checkout spins forever")
_MENTIONS_HOSTILE = ("[bold]hello[/] <script>alert(1)</script>", "\u202edetrats evah I",
                     _LONG_LINE, "\x1b[31mred alert\x1b[0m from a terminal fan")
_SOCIAL_FOLLOW_UPS = ("thanks, that worked!", "still broken, sorry", "DM sent",
                      "that didn't help at all", "ok, but when?")
_SOCIAL_REPLIES = ("Sorry about that! Could you DM us your order number?",
                   "Thanks for flagging this, our team is on it.",
                   "Glad you like it! 🎉", "Hi! Please try clearing the app cache; "
                   "if that fails, DM us.", "We're looking into it right now.")


# -- the plan: actions between abstract people ---------------------------------------------


@dataclass(frozen=True, slots=True)
class NewTicket:
    """A customer opens a ticket on desk ``source``; ``ticket`` is the model's key for it.

    ``requester`` indexes ``Cast.customers``; ``group`` is a name of ``Cast.groups``.
    """

    at: datetime
    source: str
    ticket: int
    requester: int
    subject: str
    body: str
    priority: str | None
    channel: str
    tags: tuple[str, ...]
    group: str | None


@dataclass(frozen=True, slots=True)
class TicketComment:
    """A comment on a ticket: a customer message, an agent reply or note, a bot answer.

    ``author`` indexes ``Cast.customers`` or ``Cast.agents`` as ``role`` says (0 for the bot).
    """

    at: datetime
    source: str
    ticket: int
    role: Role
    author: int
    body: str
    public: bool


@dataclass(frozen=True, slots=True)
class TicketUpdate:
    """A change of a ticket's status, priority, assignee (an agent index) or group."""

    at: datetime
    source: str
    ticket: int
    role: Role
    author: int
    status: str | None = None
    priority: str | None = None
    assignee: int | None = None
    group: str | None = None


@dataclass(frozen=True, slots=True)
class SocialPost:
    """A post in a mention thread on network ``source``: the customer's or the brand's.

    ``post`` is the model's key for the post, ``reply_to`` the key it answers;
    ``customer`` indexes ``Cast.accounts``: the thread's customer, whoever writes.
    """

    at: datetime
    source: str
    thread: int
    post: int
    customer: int
    by_brand: bool
    text: str
    reply_to: int | None = None


Action = NewTicket | TicketComment | TicketUpdate | SocialPost
"""One step of the simulated world, planned ahead and written when its time comes."""


@dataclass(frozen=True, slots=True)
class HistoryStats:
    """What ``generate_history`` wrote, and how many steps it left for the live phase."""

    tickets: int
    mentions: int
    """Mentions that open a thread (customers' follow-ups are counted in ``follow_ups``)."""
    replies: int
    """Public replies by agents and by the brand account; bot answers are not replies."""
    bot_replies: int
    internal_notes: int
    follow_ups: int
    """Customer messages after the first, on the desk and on social."""
    pending: int
    """Planned steps due at or after the end of the window, left for ``run_live``."""

    def __str__(self) -> str:
        return (f"{self.tickets} tickets, {self.mentions} mentions, {self.replies} replies, "
                f"{self.pending} steps to come")


@dataclass(frozen=True, slots=True)
class Person:
    """Someone on the desk side: a display name and an email address."""

    name: str
    email: str


@dataclass(frozen=True, slots=True)
class Account:
    """Someone on the social side: a username (valid on every network) and a display name."""

    username: str
    display_name: str


@dataclass(frozen=True, slots=True)
class Cast:
    """The people of the simulation; actions name them by index, adapters by their world ids."""

    agents: tuple[Person, ...]
    bot: Person
    customers: tuple[Person, ...]
    accounts: tuple[Account, ...]
    groups: tuple[str, ...]


def make_cast(rng: random.Random) -> Cast:
    """Draw the cast from ``rng``: 8 agents, a bot, 300 customers, 150 social accounts."""
    pairs = rng.sample([(f, la) for f in _FIRST_NAMES for la in _LAST_NAMES], 300)
    names = [f"{first} {last}" for first, last in pairs]
    names[rng.randrange(30, 300)] = _HOSTILE_NAMES[0]
    names[rng.randrange(30, 300)] = _HOSTILE_NAMES[1]
    customers = tuple(
        Person(name, _email(name, _DOMAINS[index % len(_DOMAINS)], index))
        for index, name in enumerate(names)
    )
    accounts: list[Account] = []
    for index, (first, last) in enumerate(rng.sample(pairs, 150)):
        display = f"{first} {last}"
        if index in (17, 99):
            display = _HOSTILE_NAMES[2 if index == 17 else 3]
        accounts.append(Account(_username(f"{first}{last[:1]}", index), display))
    return Cast(
        agents=tuple(Person(name, _email(name, "acme.example")) for name in _AGENTS),
        bot=Person("Answer Bot", "answerbot@acme.example"),
        customers=customers,
        accounts=tuple(accounts),
        groups=("billing", "technical", "accounts"),
    )


# -- adapters: how abstract actions land in each fake's world ------------------------------


class _Fake(Protocol):
    """What the demo needs of a fake API."""

    controls: FakeControls

    def app(self) -> web.Application:
        """A fresh aiohttp application serving the fake's world."""
        ...


class DemoSource(abc.ABC):
    """One fake API of the demo: its world and server, its settings, and the cast in it."""

    kind: ClassVar[str]
    stream: ClassVar[Stream]
    volume: ClassVar[float] = 1.0
    """The share of the traffic profile this source sees (see the module docstring)."""
    poll_every: ClassVar[str] = "15s"
    fake: _Fake

    def __init__(self, now: Callable[[], datetime], *, name: str | None = None) -> None:
        self.now = now
        """The clock the world and its fake read."""
        self.name = name or f"{BRAND}-{self.kind}"
        """The source's name in the config."""

    @property
    def controls(self) -> FakeControls:
        """The fake's request log and fault queue."""
        return self.fake.controls

    def app(self) -> web.Application:
        """A fresh aiohttp application of the fake."""
        return self.fake.app()

    @abc.abstractmethod
    def setup(self, cast: Cast) -> None:
        """Create the cast's people (and groups) in the world."""

    @abc.abstractmethod
    def settings(self, base_url: str) -> dict[str, Any]:
        """This source's ``[[sources]]`` entry, pointing at the fake served at ``base_url``."""

    def _common(self, base_url: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "base_url": base_url,
            "poll_every": self.poll_every,
        }


class DeskSource(DemoSource):
    """A help desk: tickets, comments and field changes."""

    stream = "desk"

    @abc.abstractmethod
    def open_ticket(self, action: NewTicket, at: datetime) -> None:
        """Write the new ticket, its first message by the requester, at ``at``."""

    @abc.abstractmethod
    def comment(self, action: TicketComment, at: datetime) -> None:
        """Write a comment (skipped where the desk has nothing like it, e.g. GitHub notes)."""

    @abc.abstractmethod
    def update(self, action: TicketUpdate, at: datetime) -> None:
        """Write the changes the desk knows of; a change to the current value is skipped."""

    def reported_priority(self, priority: str | None) -> str | None:
        """The priority the connector will report for a ticket planned with ``priority``."""
        return priority


class SocialSource(DemoSource):
    """A social network: the brand's mention threads."""

    stream = "social"
    late_arrivals_seen: ClassVar[bool] = False
    """Whether a post written now with an earlier time still reaches a reader that has
    passed that time (the network numbers posts as they arrive)."""

    @abc.abstractmethod
    def post(self, action: SocialPost, at: datetime) -> None:
        """Write the post (mention, brand reply or follow-up), addressed as the network does."""


@dataclass(slots=True)
class _People(Generic[_T]):
    """A world's ids of the cast, by the model's (role, index)."""

    agents: list[_T]
    bot: _T
    customers: list[_T]

    def __call__(self, role: Role, index: int) -> _T:
        if role == "agent":
            return self.agents[index]
        return self.customers[index] if role == "customer" else self.bot


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _split(name: str) -> tuple[str, str]:
    first, _, last = name.partition(" ")
    return first, last


ZENDESK_EXPORTS_PER_MINUTE = 30
"""Export requests per minute of the demo's Zendesk: the High Volume add-on."""


class ZendeskDesk(DeskSource):
    """Zendesk Support: end-users, agents, the answer bot, groups; statuses as they are."""

    kind = "zendesk"

    def __init__(self, now: Callable[[], datetime], *, name: str | None = None) -> None:
        super().__init__(now, name=name)
        self.world = zendesk.ZendeskWorld(now=now, subdomain=BRAND)
        self.fake = zendesk.ZendeskFake(
            self.world, email=FAKE_EMAIL, token=FAKE_TOKEN, rate_limit=ZENDESK_EXPORTS_PER_MINUTE
        )
        self._people = _People[int]([], 0, [])
        self._groups: dict[str, int] = {}
        self._tickets: dict[int, int] = {}

    def setup(self, cast: Cast) -> None:
        """Add the cast as Zendesk users and groups."""
        world = self.world
        agents = [world.add_user(p.name, "agent", p.email) for p in cast.agents]
        bot = world.add_user(cast.bot.name, "agent", cast.bot.email)
        customers = [world.add_user(p.name, "end-user", p.email) for p in cast.customers]
        self._people = _People(agents, bot, customers)
        self._groups = {group: world.add_group(group.title()) for group in cast.groups}

    def open_ticket(self, action: NewTicket, at: datetime) -> None:
        """Create the ticket."""
        self._tickets[action.ticket] = self.world.create_ticket(
            requester_id=self._people("customer", action.requester),
            subject=action.subject,
            body=action.body,
            at=at,
            priority=action.priority,
            channel=action.channel,
            tags=action.tags,
            group_id=self._groups.get(action.group or ""),
        )

    def comment(self, action: TicketComment, at: datetime) -> None:
        """Comment; the bot comments through the answer bot channel."""
        self.world.add_comment(
            self._tickets[action.ticket],
            author_id=self._people(action.role, action.author),
            body=action.body,
            public=action.public,
            at=at,
            via="answer_bot" if action.role == "bot" else "web",
        )

    def update(self, action: TicketUpdate, at: datetime) -> None:
        """Update the ticket's fields."""
        self.world.update(
            self._tickets[action.ticket],
            at=at,
            author_id=self._people(action.role, action.author),
            status=action.status,
            priority=action.priority,
            assignee_id=None if action.assignee is None else self._people.agents[action.assignee],
            group_id=self._groups.get(action.group or ""),
        )

    def settings(self, base_url: str) -> dict[str, Any]:
        """Token auth, and the add-on's export rate."""
        return self._common(base_url) | {
            "subdomain": BRAND,
            "email": FAKE_EMAIL,
            "token": FAKE_TOKEN,
            "requests_per_minute": ZENDESK_EXPORTS_PER_MINUTE,
        }


FRESHDESK_CREDITS_PER_MINUTE = 700
"""API credits a minute of the demo's Freshdesk: the Enterprise plan."""
_FRESHDESK_ON_HOLD = 6  # the first custom status, "Waiting on Third Party" in the demo
_FRESHDESK_STATUS = {
    "open": freshdesk.OPEN,
    "pending": freshdesk.PENDING,
    "hold": _FRESHDESK_ON_HOLD,
    "solved": freshdesk.RESOLVED,
    "closed": freshdesk.CLOSED,
}
_FRESHDESK_PRIORITY = {"low": 1, "normal": 2, "high": 3, "urgent": 4}
_FRESHDESK_CHANNEL = {"email": 1, "web": 2, "api": 2}


class FreshdeskDesk(DeskSource):
    """Freshdesk: contacts, agents (the bot among them), groups, numeric statuses."""

    kind = "freshdesk"
    # One conversations request per ticket: ~410 tickets a week fit the first minute's
    # 700 credits, so the backfill never waits for the budget to refill.
    volume = 0.22

    def __init__(self, now: Callable[[], datetime], *, name: str | None = None) -> None:
        super().__init__(now, name=name)
        self.world = freshdesk.FreshdeskWorld(now=now, support_email="support@acme.example")
        self.fake = freshdesk.FreshdeskFake(
            self.world,
            api_key=FAKE_TOKEN,
            agent_email=FAKE_EMAIL,
            rate_limit=FRESHDESK_CREDITS_PER_MINUTE,
        )
        self._people = _People[int]([], 0, [])
        self._groups: dict[str, int] = {}
        self._tickets: dict[int, int] = {}

    def setup(self, cast: Cast) -> None:
        """Add the cast as agents and contacts, and the groups."""
        world = self.world
        self._people = _People(
            [world.add_agent(p.name, p.email) for p in cast.agents],
            world.add_agent(cast.bot.name, cast.bot.email),
            [world.add_contact(p.name, p.email) for p in cast.customers],
        )
        self._groups = {group: world.add_group(group.title()) for group in cast.groups}

    def open_ticket(self, action: NewTicket, at: datetime) -> None:
        """Create the ticket; without a priority it gets Freshdesk's default, Low."""
        self._tickets[action.ticket] = self.world.create_ticket(
            requester_id=self._people("customer", action.requester),
            subject=action.subject,
            description=action.body,
            at=at,
            priority=_FRESHDESK_PRIORITY[self.reported_priority(action.priority) or "low"],
            source=_FRESHDESK_CHANNEL.get(action.channel, 2),
            tags=action.tags,
            group_id=self._groups.get(action.group or ""),
        )

    def comment(self, action: TicketComment, at: datetime) -> None:
        """A customer reply, an agent's (or bot's) reply, or a private note."""
        ticket = self._tickets[action.ticket]
        who = self._people(action.role, action.author)
        if action.role == "customer":
            self.world.customer_reply(ticket, body=action.body, at=at)
        elif action.public:
            self.world.reply(ticket, agent_id=who, body=action.body, at=at)
        else:
            self.world.note(ticket, user_id=who, body=action.body, at=at)

    def update(self, action: TicketUpdate, at: datetime) -> None:
        """Set the status, then the properties."""
        ticket = self._tickets[action.ticket]
        if action.status is not None:
            self.world.set_status(ticket, _FRESHDESK_STATUS[action.status], at=at)
        if action.priority is not None or action.assignee is not None or action.group:
            self.world.update(
                ticket,
                at=at,
                priority=None if action.priority is None else _FRESHDESK_PRIORITY[action.priority],
                responder_id=None
                if action.assignee is None
                else self._people.agents[action.assignee],
                group_id=self._groups.get(action.group or ""),
            )

    def reported_priority(self, priority: str | None) -> str | None:
        """Freshdesk always has a priority: Low unless set."""
        return priority or "low"

    def settings(self, base_url: str) -> dict[str, Any]:
        """API key auth, the custom on-hold status and the bot agent."""
        return self._common(base_url) | {
            "subdomain": BRAND,
            "api_key": FAKE_TOKEN,
            "custom_statuses": {str(_FRESHDESK_ON_HOLD): "on_hold"},
            "bot_user_ids": [self._people.bot],
        }


_ZAMMAD_STATE = {
    "open": "open",
    "pending": "pending close",
    "hold": "pending reminder",
    "solved": "closed",
    "closed": "closed",
}
_ZAMMAD_PRIORITY = {"low": "1 low", "normal": "2 normal", "high": "3 high", "urgent": "3 high"}


class ZammadDesk(DeskSource):
    """Zammad: customers, agents, groups, states; the bot writes as the System sender."""

    kind = "zammad"

    def __init__(self, now: Callable[[], datetime], *, name: str | None = None) -> None:
        super().__init__(now, name=name)
        self.world = zammad.ZammadWorld(now=now)
        self.fake = zammad.ZammadFake(self.world, token=FAKE_TOKEN, agent_email=FAKE_EMAIL)
        self._people = _People[int]([], 0, [])
        self._groups: dict[str, int] = {}
        self._tickets: dict[int, int] = {}

    def setup(self, cast: Cast) -> None:
        """Add the cast as agents and customers, and the groups."""
        world = self.world
        self._people = _People(
            [world.add_user(*_split(p.name), p.email, role="Agent") for p in cast.agents],
            world.add_user(*_split(cast.bot.name), cast.bot.email, role="Agent"),
            [world.add_user(*_split(p.name), p.email) for p in cast.customers],
        )
        self._groups = {group: world.add_group(group.title()) for group in cast.groups}

    def open_ticket(self, action: NewTicket, at: datetime) -> None:
        """Create the ticket; Zammad has no urgent priority, so urgent is high."""
        self._tickets[action.ticket] = self.world.create_ticket(
            customer_id=self._people("customer", action.requester),
            title=action.subject,
            body=action.body,
            at=at,
            group_id=self._groups.get(action.group or "", 1),
            priority=_ZAMMAD_PRIORITY[action.priority or "normal"],
            type="email" if action.channel == "email" else "web",
        )

    def comment(self, action: TicketComment, at: datetime) -> None:
        """An article: the customer's, an agent's email or internal note, or a System one."""
        sender = {"customer": "Customer", "agent": "Agent", "bot": "System"}[action.role]
        self.world.add_article(
            self._tickets[action.ticket],
            author_id=self._people(action.role, action.author),
            body=action.body,
            at=at,
            sender=sender,
            internal=not action.public,
            type="email" if action.public else "note",
        )

    def update(self, action: TicketUpdate, at: datetime) -> None:
        """Change the state and attributes the ticket does not already have."""
        ticket = self._tickets[action.ticket]
        state = None if action.status is None else _ZAMMAD_STATE[action.status]
        if state is not None and zammad.STATES[self.world.tickets[ticket].state_id] == state:
            state = None
        priority = None if action.priority is None else _ZAMMAD_PRIORITY[action.priority]
        owner = None if action.assignee is None else self._people.agents[action.assignee]
        group = self._groups.get(action.group or "")
        if state is None and priority is None and owner is None and group is None:
            return
        self.world.update(
            ticket,
            at=at,
            by=self._people(action.role, action.author),
            state=state,
            priority=priority,
            owner_id=owner,
            group_id=group,
        )

    def reported_priority(self, priority: str | None) -> str | None:
        """Zammad's three priorities; a ticket without one is normal."""
        return "high" if priority == "urgent" else priority or "normal"

    def settings(self, base_url: str) -> dict[str, Any]:
        """Token auth and the instance's address for links."""
        return self._common(base_url) | {
            "url": "https://support.acme.example",
            "token": FAKE_TOKEN,
            "page_size": 200,
        }


_HELPSCOUT_STATUS: dict[str, helpscout.ConversationStatus] = {
    "open": "active",
    "pending": "pending",
    "hold": "pending",
    "solved": "closed",
    "closed": "closed",
}


class HelpScoutDesk(DeskSource):
    """Help Scout: customers, users, the AI user, one mailbox per group; no priorities."""

    kind = "helpscout"
    # One threads request per conversation against 400 requests a minute (the connector's
    # default budget, and the fake's limit): ~310 conversations a week fit the first minute.
    volume = 0.16

    def __init__(self, now: Callable[[], datetime], *, name: str | None = None) -> None:
        super().__init__(now, name=name)
        self.world = helpscout.HelpScoutWorld(now=now)
        self.fake = helpscout.HelpScoutFake(
            self.world, client_id="fake-app-id", client_secret=FAKE_TOKEN
        )
        self._people = _People[int]([], 0, [])
        self._mailboxes: dict[str, int] = {}
        self._support = 0
        self._conversations: dict[int, int] = {}

    def setup(self, cast: Cast) -> None:
        """Add the cast as users and customers, and a mailbox per group."""
        world = self.world
        self._people = _People(
            [world.add_user(*_split(p.name), p.email) for p in cast.agents],
            world.add_user("Acme", "AI", ai=True),
            [world.add_customer(*_split(p.name), p.email) for p in cast.customers],
        )
        self._support = world.add_mailbox("Support")
        self._mailboxes = {group: world.add_mailbox(group.title()) for group in cast.groups}

    def open_ticket(self, action: NewTicket, at: datetime) -> None:
        """The customer writes to the group's mailbox (Support without a group)."""
        self._conversations[action.ticket] = self.world.create_conversation(
            customer_id=self._people("customer", action.requester),
            mailbox_id=self._mailboxes.get(action.group or "", self._support),
            subject=action.subject,
            body=action.body,
            at=at,
            channel="chat" if action.channel == "web" else "email",
            tags=action.tags,
        )

    def comment(self, action: TicketComment, at: datetime) -> None:
        """A customer thread, a reply (the AI's for the bot), or a note."""
        conversation = self._conversations[action.ticket]
        who = self._people(action.role, action.author)
        if action.role == "customer":
            self.world.customer_reply(conversation, body=action.body, at=at)
        elif action.public:
            self.world.reply(conversation, user_id=who, body=action.body, at=at)
        else:
            self.world.add_note(conversation, user_id=who, body=action.body, at=at)

    def update(self, action: TicketUpdate, at: datetime) -> None:
        """Status and assignee changes as line items; a customer's thread reopens by itself."""
        conversation = self._conversations[action.ticket]
        if action.role == "customer":
            return
        who = self._people(action.role, action.author)
        status = None if action.status is None else _HELPSCOUT_STATUS[action.status]
        if status is not None and self.world.conversations[conversation].status != status:
            self.world.change_status(conversation, user_id=who, status=status, at=at)
        if action.assignee is not None:
            self.world.assign(
                conversation, user_id=who, assignee_id=self._people.agents[action.assignee], at=at
            )

    def reported_priority(self, priority: str | None) -> str | None:
        """Help Scout has no priorities."""
        return None

    def settings(self, base_url: str) -> dict[str, Any]:
        """The OAuth app's credentials; threads from v3, which tells the AI apart."""
        return self._common(base_url) | {
            "client_id": "fake-app-id",
            "client_secret": FAKE_TOKEN,
            "threads_api": "v3",
        }


class IntercomDesk(DeskSource):
    """Intercom: contacts, admins, teams, the Operator bot; priority is a flag."""

    kind = "intercom"
    # One conversation read per conversation: ~1,100 a week fit one 10-second window of
    # Intercom's 10,000 requests a minute, so the backfill never waits for the next.
    volume = 0.6

    def __init__(self, now: Callable[[], datetime], *, name: str | None = None) -> None:
        super().__init__(now, name=name)
        self.world = intercom.IntercomWorld(now=now, app_name="Acme")
        fake = intercom.IntercomFake(self.world, token=FAKE_TOKEN)
        self.fake = fake
        self._router = fake.me  # the workspace owner, whose assignment rules route by team
        self._people = _People[str]([], "", [])
        self._teams: dict[str, str] = {}
        self._conversations: dict[int, str] = {}

    def setup(self, cast: Cast) -> None:
        """Add the cast as admins and contacts, and a team per group."""
        world = self.world
        self._people = _People(
            [world.add_admin(p.name, p.email) for p in cast.agents],
            world.bot.id,
            [world.add_contact(p.name, p.email) for p in cast.customers],
        )
        self._teams = {group: world.add_team(group.title()) for group in cast.groups}

    def open_ticket(self, action: NewTicket, at: datetime) -> None:
        """The contact writes in; flag, tags and team routing follow at once."""
        world = self.world
        conversation = world.start_conversation(
            contact_id=self._people("customer", action.requester),
            body=action.body,
            at=at,
            subject=action.subject,
        )
        self._conversations[action.ticket] = conversation
        if action.priority in ("urgent", "high"):
            world.set_priority(conversation, True, at=at)
        if action.tags:
            world.tag(conversation, action.tags, at=at)
        if action.group:
            world.assign(
                conversation, admin_id=self._router, at=at, team_id=self._teams[action.group]
            )

    def comment(self, action: TicketComment, at: datetime) -> None:
        """A contact reply, an admin reply or note, or the Operator's answer."""
        conversation = self._conversations[action.ticket]
        world = self.world
        if action.role == "customer":
            world.customer_reply(conversation, body=action.body, at=at)
        elif action.role == "bot":
            world.bot_reply(conversation, body=action.body, at=at)
        elif action.public:
            world.admin_reply(
                conversation, admin_id=self._people.agents[action.author], body=action.body, at=at
            )
        else:
            world.add_note(
                conversation, admin_id=self._people.agents[action.author], body=action.body, at=at
            )

    def update(self, action: TicketUpdate, at: datetime) -> None:
        """Close, reopen or snooze, flag, assign; a contact's reply reopens by itself."""
        conversation = self._conversations[action.ticket]
        world = self.world
        if action.role != "agent":
            return  # the contact's reply reopened it; the bot's close follows a close
        admin = self._people.agents[action.author]
        state = world.conversations[conversation].state
        if action.status == "open" and state != "open":
            world.reopen(conversation, admin_id=admin, at=at)
        elif action.status in ("pending", "hold") and state != "snoozed":
            world.snooze(conversation, admin_id=admin, until=at + timedelta(days=1), at=at)
        elif action.status in ("solved", "closed") and state != "closed":
            world.close(conversation, admin_id=admin, at=at)
        if action.priority is not None:
            world.set_priority(conversation, action.priority in ("urgent", "high"), at=at)
        if action.assignee is not None:
            world.assign(
                conversation,
                admin_id=admin,
                at=at,
                assignee_id=self._people.agents[action.assignee],
            )
        if action.group:
            world.assign(conversation, admin_id=admin, at=at, team_id=self._teams[action.group])

    def reported_priority(self, priority: str | None) -> str | None:
        """Intercom's flag: priority (high) or not (normal)."""
        return "high" if priority in ("urgent", "high") else "normal"

    def settings(self, base_url: str) -> dict[str, Any]:
        """The access token; the largest search page."""
        return self._common(base_url) | {"token": FAKE_TOKEN, "page_size": 150}


_PRIORITY_LABELS = {"urgent": "P0", "high": "P1", "normal": "P2", "low": "P3"}


class GitHubDesk(DeskSource):
    """GitHub issues: users, members (the agents), a bot; priority labels P0-P3."""

    kind = "github"
    # A busy open-source project, not a help desk: ~300 issues a week.
    volume = 0.15

    def __init__(self, now: Callable[[], datetime], *, name: str | None = None) -> None:
        super().__init__(now, name=name)
        self.world = github.GitHubWorld(now=now, repo=f"{BRAND}/widgets")
        self.fake = github.GitHubFake(self.world, token=FAKE_TOKEN)
        self._people = _People[str]([], "", [])
        self._issues: dict[int, int] = {}
        self._labels: dict[int, tuple[str | None, tuple[str, ...]]] = {}

    def setup(self, cast: Cast) -> None:
        """Add members for the agents, a bot account, and users for the customers."""
        world = self.world
        self._people = _People(
            [world.add_user(_login(p.name), "MEMBER") for p in cast.agents],
            world.add_user(f"{BRAND}-helper[bot]", bot=True),
            [world.add_user(_login(p.name, index)) for index, p in enumerate(cast.customers)],
        )

    def open_ticket(self, action: NewTicket, at: datetime) -> None:
        """Open the issue with its priority label and tags as labels."""
        labels = (action.priority, action.tags)
        self._issues[action.ticket] = self.world.open_issue(
            self._people("customer", action.requester),
            action.subject,
            action.body,
            at=at,
            labels=_labels(*labels),
        )
        self._labels[action.ticket] = labels

    def comment(self, action: TicketComment, at: datetime) -> None:
        """Comment; GitHub has no internal notes, so those are not written."""
        if action.public:
            self.world.comment(
                self._issues[action.ticket],
                self._people(action.role, action.author),
                action.body,
                at=at,
            )

    def update(self, action: TicketUpdate, at: datetime) -> None:
        """Close when solved, reopen when open again, relabel, assign."""
        number = self._issues[action.ticket]
        world = self.world
        who = self._people(action.role, action.author)
        state = world.issues[number].state
        if action.status == "solved" and state == "open":
            world.close(number, who, at=at)
        elif action.status == "open" and state == "closed":
            world.reopen(number, who, at=at)
        if action.priority is not None:
            tags = self._labels[action.ticket][1]
            self._labels[action.ticket] = (action.priority, tags)
            world.set_labels(number, _labels(action.priority, tags), at=at)
        if action.assignee is not None:
            world.assign(number, self._people.agents[action.assignee], at=at)

    def settings(self, base_url: str) -> dict[str, Any]:
        """The repository, a token, and the priority labels."""
        return self._common(base_url) | {
            "repo": self.world.full_name,
            "token": FAKE_TOKEN,
            "priority_labels": {label: priority for priority, label in _PRIORITY_LABELS.items()},
        }


def _labels(priority: str | None, tags: tuple[str, ...]) -> list[str]:
    return ([_PRIORITY_LABELS[priority]] if priority else []) + list(tags)


def _login(name: str, index: int | None = None) -> str:
    cleaned = "-".join(
        "".join(c for c in part.lower() if c.isascii() and c.isalnum()) for part in name.split()
    ).strip("-")
    cleaned = "-".join(part for part in cleaned.split("-") if part) or "someone"
    return cleaned if index is None else f"{cleaned}-{index}"


class MastodonSocial(SocialSource):
    """Mastodon: ``@acme`` mentions, the brand's ``@user`` replies; 500 characters."""

    kind = "mastodon"
    poll_every = "10s"
    late_arrivals_seen = True

    def __init__(self, now: Callable[[], datetime], *, name: str | None = None) -> None:
        super().__init__(now, name=name)
        self.world = mastodon.MastodonWorld(now=now, brand=BRAND)
        self.fake = mastodon.MastodonFake(self.world, token=FAKE_TOKEN)
        self._accounts: list[str] = []
        self._usernames: list[str] = []
        self._posts: dict[int, str] = {}

    def setup(self, cast: Cast) -> None:
        """Add the accounts."""
        self._usernames = [a.username for a in cast.accounts]
        self._accounts = [self.world.add_account(a.username, a.display_name) for a in cast.accounts]

    def post(self, action: SocialPost, at: datetime) -> None:
        """Publish the status, mentioning the brand or the customer."""
        if action.by_brand:
            author, text = self.world.brand_id, f"@{self._usernames[action.customer]} "
        else:
            author, text = self._accounts[action.customer], f"@{BRAND} "
        self._posts[action.post] = self.world.post(
            author,
            _fit(text + action.text, 500),
            at=at,
            in_reply_to_id=None if action.reply_to is None else self._posts[action.reply_to],
        )

    def settings(self, base_url: str) -> dict[str, Any]:
        """The brand's token."""
        return self._common(base_url) | {"token": FAKE_TOKEN}


class BlueskySocial(SocialSource):
    """Bluesky: mention facets and reply notifications; 300 characters."""

    kind = "bluesky"
    poll_every = "10s"
    handle = f"{BRAND}.bsky.social"

    def __init__(self, now: Callable[[], datetime], *, name: str | None = None) -> None:
        super().__init__(now, name=name)
        self.world = bluesky.BlueskyWorld(
            now=now, brand=self.handle, app_password=FAKE_APP_PASSWORD
        )
        self.fake = bluesky.BlueskyFake(self.world)
        self._accounts: list[str] = []
        self._handles: list[str] = []
        self._posts: dict[int, str] = {}

    def setup(self, cast: Cast) -> None:
        """Add the accounts as ``name.bsky.social``."""
        self._handles = [f"{a.username}.bsky.social" for a in cast.accounts]
        self._accounts = [
            self.world.add_account(handle, a.display_name)
            for handle, a in zip(self._handles, cast.accounts, strict=True)
        ]

    def post(self, action: SocialPost, at: datetime) -> None:
        """Post; a customer's reply to the brand notifies it without a mention."""
        if action.by_brand:
            author, text = self.world.brand_did, f"@{self._handles[action.customer]} "
        else:
            author, text = (
                self._accounts[action.customer],
                ("" if action.reply_to is not None else f"@{self.handle} "),
            )
        self._posts[action.post] = self.world.post(
            author,
            _fit(text + action.text, 300),
            at=at,
            reply_to=None if action.reply_to is None else self._posts[action.reply_to],
        )

    def settings(self, base_url: str) -> dict[str, Any]:
        """The brand's handle and app password."""
        return self._common(base_url) | {"handle": self.handle, "app_password": FAKE_APP_PASSWORD}


class XSocial(SocialSource):
    """X: ``@acme`` mentions; replies start with ``@`` their parent's author; 280 characters."""

    kind = "x"
    # The mentions timeline reaches back 800 tweets: a week must stay below that.
    volume = 0.3

    def __init__(self, now: Callable[[], datetime], *, name: str | None = None) -> None:
        super().__init__(now, name=name)
        self.world = x_fake.XWorld(now=now, brand=BRAND)
        self.fake = x_fake.XFake(self.world, tokens={FAKE_TOKEN: self.world.brand_id})
        self._accounts: list[str] = []
        self._posts: dict[int, str] = {}

    def setup(self, cast: Cast) -> None:
        """Add the accounts."""
        self._accounts = [self.world.add_user(a.username, a.display_name) for a in cast.accounts]

    def post(self, action: SocialPost, at: datetime) -> None:
        """Tweet; X's client puts the parent's ``@author`` in front of a reply."""
        if action.by_brand:
            author, text = self.world.brand_id, action.text
        else:
            author = self._accounts[action.customer]
            text = action.text if action.reply_to is not None else f"@{BRAND} {action.text}"
        self._posts[action.post] = self.world.tweet(
            author,
            _fit(text, 250),
            at=at,
            reply_to=None if action.reply_to is None else self._posts[action.reply_to],
        )

    def settings(self, base_url: str) -> dict[str, Any]:
        """The brand's user token."""
        return self._common(base_url) | {"token": FAKE_TOKEN}


class RedditSocial(SocialSource):
    """Reddit: comments naming ``u/acme_support`` under posts, the brand's comment replies."""

    kind = "reddit"
    poll_every = "10s"
    username = f"{BRAND}_support"
    _SUBREDDITS = ("gadgets", "techsupport", "BuyItForLife")

    def __init__(self, now: Callable[[], datetime], *, name: str | None = None) -> None:
        super().__init__(now, name=name)
        self.world = reddit.RedditWorld(now=now, brand=self.username)
        self.fake = reddit.RedditFake(
            self.world, client_id="fake-client", client_secret=FAKE_TOKEN, password=FAKE_TOKEN
        )
        self._accounts: list[str] = []
        self._threads: list[str] = []
        self._posts: dict[int, str] = {}

    def setup(self, cast: Cast) -> None:
        """Add the accounts and the month-old posts under which people mention the brand."""
        world = self.world
        self._accounts = [world.add_account(a.username) for a in cast.accounts]
        month_ago = world.now() - timedelta(days=30)
        self._threads = [
            world.post(self._accounts[index], self._SUBREDDITS[index % 3], title, at=month_ago)
            for index, title in enumerate(
                (
                    "Anyone else having trouble with Acme?",
                    "Acme support: good or bad?",
                    "Is the Acme printer worth it?",
                    "Acme app keeps logging me out",
                )
            )
        ]

    def post(self, action: SocialPost, at: datetime) -> None:
        """Comment: a mention under a post, the brand's reply, a reply to the brand."""
        world = self.world
        if action.reply_to is not None:
            author = self.username if action.by_brand else self._accounts[action.customer]
            self._posts[action.post] = world.comment(
                author, self._posts[action.reply_to], action.text, at=at
            )
        else:
            thread = self._threads[action.thread % len(self._threads)]
            self._posts[action.post] = world.comment(
                self._accounts[action.customer], thread, f"u/{self.username} {action.text}", at=at
            )

    def settings(self, base_url: str) -> dict[str, Any]:
        """The brand's script app and password; tokens come from the fake too."""
        return self._common(base_url) | {
            "client_id": "fake-client",
            "client_secret": FAKE_TOKEN,
            "username": self.username,
            "password": FAKE_TOKEN,
            "auth_url": base_url,
        }


DEMO_SOURCES: dict[str, type[DeskSource] | type[SocialSource]] = {
    source.kind: source
    for source in (
        ZendeskDesk,
        FreshdeskDesk,
        ZammadDesk,
        HelpScoutDesk,
        IntercomDesk,
        GitHubDesk,
        MastodonSocial,
        BlueskySocial,
        XSocial,
        RedditSocial,
    )
}
"""Every kind the demo can serve, by kind."""
DEFAULT_SOURCES = ("zendesk", "mastodon", "bluesky")
"""A help desk and two social networks."""


def parse_source_kinds(text: str) -> tuple[str, ...]:
    """``"zendesk, x"`` -> ``("zendesk", "x")``; ValueError names an unknown kind."""
    kinds = [part.strip().lower() for part in text.split(",") if part.strip()]
    known = ", ".join(sorted(DEMO_SOURCES))
    if not kinds:
        raise ValueError(f"name at least one source kind (known: {known})")
    for kind in kinds:
        if kind not in DEMO_SOURCES:
            raise ValueError(f"unknown source kind {kind!r} (known: {known})")
    return tuple(dict.fromkeys(kinds))


def make_sources(kinds: Iterable[str], now: Callable[[], datetime]) -> list[DemoSource]:
    """Fresh adapters (worlds and fakes) of ``kinds``, in that order, reading ``now``."""
    return [DEMO_SOURCES[kind](now) for kind in parse_source_kinds(",".join(kinds))]


# -- the model ------------------------------------------------------------------------------


@cache
def _us_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("US", years=year))


def hourly_rate(stream: Stream, at: datetime) -> float:
    """Expected arrivals per hour of ``stream`` at instant ``at`` (New York profile)."""
    local = require_utc(at).astimezone(TIMEZONE)
    table = _DESK_PER_HOUR if stream == "desk" else _SOCIAL_PER_HOUR
    rate = float(table[local.hour])
    if local.weekday() >= 5 or local.date() in _us_holidays(local.year):
        rate *= _QUIET_DAY_FACTOR[stream]
    return rate


def arrival_times(rng: random.Random, start: datetime, end: datetime,
                  rate: Callable[[datetime], float]) -> list[datetime]:
    """Arrivals of a Poisson process in [start, end) whose rate (per hour) is constant per UTC hour.

    Exponential gaps are drawn hour segment by hour segment; the process is memoryless,
    so restarting at each boundary with the new rate is exact.
    """
    start, end = require_utc(start, "start"), require_utc(end, "end")
    arrivals: list[datetime] = []
    segment_start = start
    while segment_start < end:
        hour = segment_start.replace(minute=0, second=0, microsecond=0)
        segment_end = min(hour + timedelta(hours=1), end)
        per_second = rate(segment_start) / 3600
        if per_second > 0:
            moment = segment_start + timedelta(seconds=rng.expovariate(per_second))
            while moment < segment_end:
                arrivals.append(moment)
                moment += timedelta(seconds=rng.expovariate(per_second))
        segment_start = segment_end
    return arrivals


def _scaled_rate(stream: Stream, factor: float) -> Callable[[datetime], float]:
    return lambda at: hourly_rate(stream, at) * factor


def social_reply_delay(rng: random.Random) -> float:
    """Seconds until the brand answers a mention: median ~3.3 min, ~12% past 6 min."""
    return rng.lognormvariate(math.log(200), 0.52)


def desk_reply_delay(rng: random.Random, target: float) -> float:
    """Seconds until an agent answers, as a log-normal share of the target (~6% late)."""
    return min(target * rng.lognormvariate(math.log(0.3), 0.75), 3 * 86400)


# (due in minutes after the openers' instant, priority, reply in minutes after the due time)
_DESK_OPENERS = (
    (1, "urgent", 5),
    (3, "urgent", -1),
    (5, "high", 2),
    (10, "high", 8),
    (15, "normal", 10),
)


class TrafficModel:
    """A seeded simulator of support traffic, writing into the worlds of its sources."""

    def __init__(self, sources: Sequence[DemoSource], *, seed: int) -> None:
        if not sources:
            raise ValueError("the demo needs at least one source")
        names = [source.name for source in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique: {names}")
        self._desks = {s.name: s for s in sources if isinstance(s, DeskSource)}
        self._socials = {s.name: s for s in sources if isinstance(s, SocialSource)}
        self._sources = list(sources)
        self._rng = random.Random(seed)
        self._keys = itertools.count(1)
        self._sequence = itertools.count()
        self._pending: list[tuple[datetime, int, Action]] = []
        self._applied: list[Action] = []
        self._openers_planted = False
        self.cast = make_cast(self._rng)
        for source in sources:
            source.setup(self.cast)

    @property
    def sources(self) -> Sequence[DemoSource]:
        """The sources the model writes into, in order."""
        return self._sources

    @property
    def applied(self) -> Sequence[Action]:
        """Every action written into the worlds so far, in order, stamped as written."""
        return self._applied

    @property
    def pending(self) -> Sequence[Action]:
        """Planned actions not yet written, in time order."""
        return [action for _, _, action in sorted(self._pending)]

    # -- planning: pure data, consuming only the model's random stream ---------------------

    def plan(self, start: datetime, end: datetime, *, scale: float = 1.0) -> list[Action]:
        """Plan every conversation arriving in [start, end), with all its later steps.

        ``scale`` multiplies every source's arrival rate. Nothing is written; the plan
        consumes the model's random stream, so planning is part of what the seed makes
        repeatable.
        """
        actions: list[Action] = []
        for desk in self._desks.values():
            rate = _scaled_rate("desk", desk.volume * scale)
            for at in arrival_times(self._rng, start, end, rate):
                actions.extend(self._plan_ticket(desk, at))
        for social in self._socials.values():
            rate = _scaled_rate("social", social.volume * scale)
            for at in arrival_times(self._rng, start, end, rate):
                actions.extend(self._plan_mention(social.name, at))
        return actions

    def plan_openers(
        self, at: datetime, sources: Iterable[DemoSource] | None = None
    ) -> list[Action]:
        """Plan conversations that turn at-risk or breached in the minutes after ``at``.

        Per social source: three unanswered mentions whose 6-minute target falls within
        two minutes of ``at`` (already at risk), one due a few minutes later, one answered
        just in time. Per desk: tickets due from 1 to 15 minutes after ``at`` against the
        target of the priority the desk reports, first an urgent one; most are answered
        late. ``sources`` defaults to all.
        """
        rng = self._rng
        at = require_utc(at)
        chosen = {source.name for source in (self._sources if sources is None else sources)}
        actions: list[Action] = []
        for social in self._socials.values():
            if social.name not in chosen:
                continue
            for age in sorted(rng.uniform(275, 345) for _ in range(3)):
                actions.extend(
                    self._plan_mention(
                        social.name, at - timedelta(seconds=age), reply_after=None, follow_up=False
                    )
                )
            actions.extend(
                self._plan_mention(
                    social.name,
                    at - timedelta(seconds=rng.uniform(50, 80)),
                    reply_after=None,
                    follow_up=False,
                )
            )
            answered = at - timedelta(seconds=rng.uniform(170, 190))
            actions.extend(
                self._plan_mention(social.name, answered, reply_after=330.0, follow_up=False)
            )
        for desk in self._desks.values():
            if desk.name not in chosen:
                continue
            for due_in, priority, late in _DESK_OPENERS:
                target = FIRST_RESPONSE_TARGETS[desk.reported_priority(priority) or "normal"]
                created = at - timedelta(seconds=target - due_in * 60 + rng.uniform(0, 20))
                actions.extend(
                    self._plan_ticket(
                        desk, created, priority=priority, reply_after=target + late * 60.0
                    )
                )
        return actions

    def _plan_mention(
        self,
        source: str,
        at: datetime,
        *,
        reply_after: float | Literal["draw"] | None = "draw",
        follow_up: bool | None = None,
    ) -> list[Action]:
        rng = self._rng
        thread = next(self._keys)
        customer = rng.randrange(len(self.cast.accounts))
        if rng.random() < 0.04:
            text = rng.choice(_MENTIONS_HOSTILE)  # each network cuts it to its own limit
        else:
            text = rng.choice(_MENTIONS).format(n=rng.randrange(10000, 99999))
        mention = next(self._keys)
        actions: list[Action] = [SocialPost(at, source, thread, mention, customer, False, text)]
        if reply_after == "draw":
            reply_after = None if rng.random() < 0.05 else social_reply_delay(rng)
        if reply_after is None:
            return actions
        replied_at = at + timedelta(seconds=reply_after)
        reply = next(self._keys)
        actions.append(
            SocialPost(
                replied_at,
                source,
                thread,
                reply,
                customer,
                True,
                rng.choice(_SOCIAL_REPLIES),
                mention,
            )
        )
        if follow_up is None:
            follow_up = rng.random() < 0.25
        if follow_up:
            again_at = replied_at + timedelta(seconds=rng.lognormvariate(math.log(480), 0.8))
            again = next(self._keys)
            actions.append(
                SocialPost(
                    again_at,
                    source,
                    thread,
                    again,
                    customer,
                    False,
                    rng.choice(_SOCIAL_FOLLOW_UPS),
                    reply,
                )
            )
            if rng.random() < 0.9:
                answer_at = again_at + timedelta(seconds=social_reply_delay(rng))
                actions.append(
                    SocialPost(
                        answer_at,
                        source,
                        thread,
                        next(self._keys),
                        customer,
                        True,
                        rng.choice(_SOCIAL_REPLIES),
                        again,
                    )
                )
        return actions

    def _plan_ticket(
        self,
        desk: DeskSource,
        at: datetime,
        *,
        priority: str | Literal["draw"] | None = "draw",
        reply_after: float | None = None,
    ) -> list[Action]:
        rng = self._rng
        cast = self.cast
        source = desk.name
        ticket = next(self._keys)
        requester = rng.randrange(len(cast.customers))
        topics = _DESK_HOSTILE if rng.random() < 0.03 else _DESK_TOPICS
        subject, body, group = rng.choice(topics)
        number = str(rng.randrange(10000, 99999))
        subject, body = subject.replace("{n}", number), body.replace("{n}", number)
        if priority == "draw":
            priority = rng.choices(["urgent", "high", "normal", "low", None],
                                   weights=[5, 15, 50, 10, 20])[0]
        channel = rng.choices(["web", "email", "api"], weights=[50, 40, 10])[0]
        tags = tuple(
            rng.sample(["vip", "mobile", "eu", "trial", "enterprise"], k=rng.choice([0, 0, 1, 2]))
        )
        routed = group if rng.random() < 0.5 else None
        actions: list[Action] = [
            NewTicket(at, source, ticket, requester, subject, body, priority, channel, tags, routed)
        ]
        agent = rng.randrange(len(cast.agents))
        effective = priority or "normal"
        drawn = reply_after is None
        if reply_after is None:
            reply_after = desk_reply_delay(rng, FIRST_RESPONSE_TARGETS[effective])
        reply_at = at + timedelta(seconds=max(reply_after, 120.0))
        # Triage comes within minutes, before the reply: priority, assignee and group.
        triage_at = at + min(timedelta(seconds=rng.lognormvariate(math.log(240), 0.8)),
                             (reply_at - at) * 0.6)
        new_priority: str | None = None
        if priority is None:
            new_priority = rng.choices(["urgent", "high", "normal", "low"],
                                       weights=[5, 20, 60, 15])[0]
        elif priority in ("normal", "high") and rng.random() < 0.08:
            new_priority = "urgent"
        if drawn and new_priority is not None:
            # A ticket raised to a tighter target gets answered against that target.
            retargeted = at + timedelta(seconds=desk_reply_delay(
                rng, FIRST_RESPONSE_TARGETS[new_priority]))
            reply_at = max(min(reply_at, retargeted), triage_at + timedelta(seconds=60))
        actions.append(
            TicketUpdate(
                triage_at,
                source,
                ticket,
                "agent",
                agent,
                priority=new_priority,
                assignee=agent,
                group=group,
            )
        )
        effective = new_priority or effective
        if channel != "api" and rng.random() < 0.2:
            actions.append(
                TicketComment(
                    at + timedelta(seconds=rng.uniform(5, 60)),
                    source,
                    ticket,
                    "bot",
                    0,
                    rng.choice(_BOT_ANSWERS),
                    True,
                )
            )
        if rng.random() < 0.25:
            note_at = triage_at + (reply_at - triage_at) * rng.uniform(0.2, 0.8)
            actions.append(
                TicketComment(
                    note_at, source, ticket, "agent", agent, rng.choice(_INTERNAL_NOTES), False
                )
            )
        if drawn and rng.random() < 0.02:
            return actions  # abandoned in the queue: it will breach and stay open
        name = cast.customers[requester].name.split(" ")[0]
        moment = reply_at
        cycles = 0
        while True:
            reply = rng.choice(_DESK_REPLIES).format(name=name, fix=rng.choice(_DESK_FIXES))
            actions.append(TicketComment(moment, source, ticket, "agent", agent, reply, True))
            status = rng.choices(["pending", "open", "hold"], weights=[60, 35, 5])[0]
            moment += timedelta(seconds=1)
            actions.append(TicketUpdate(moment, source, ticket, "agent", agent, status=status))
            cycles += 1
            if cycles < 4 and rng.random() < (0.45 if cycles == 1 else 0.25):
                moment += timedelta(seconds=rng.lognormvariate(math.log(3 * 3600), 1.0))
                actions.extend(self._customer_writes(source, ticket, requester, moment))
                moment += timedelta(
                    seconds=max(60.0, desk_reply_delay(rng, NEXT_RESPONSE_TARGETS[effective]))
                )
                continue
            if rng.random() < 0.8:
                moment += timedelta(seconds=rng.uniform(60, 2 * 3600))
                actions.append(
                    TicketUpdate(moment, source, ticket, "agent", agent, status="solved")
                )
                if cycles < 4 and rng.random() < 0.1:
                    moment += timedelta(seconds=rng.lognormvariate(math.log(86400), 0.7))
                    actions.extend(self._customer_writes(source, ticket, requester, moment))
                    moment += timedelta(
                        seconds=max(60.0, desk_reply_delay(rng, NEXT_RESPONSE_TARGETS[effective]))
                    )
                    continue
                # Zendesk's default automation closes a solved ticket after four days.
                actions.append(
                    TicketUpdate(
                        moment + timedelta(days=4), source, ticket, "bot", 0, status="closed"
                    )
                )
            return actions

    def _customer_writes(
        self, source: str, ticket: int, requester: int, at: datetime
    ) -> list[Action]:
        text = self._rng.choice(_DESK_FOLLOW_UPS)
        return [
            TicketComment(at, source, ticket, "customer", requester, text, True),
            TicketUpdate(
                at + timedelta(seconds=1), source, ticket, "customer", requester, status="open"
            ),
        ]

    # -- writing ------------------------------------------------------------------------------

    def generate_history(self, start: datetime, end: datetime) -> HistoryStats:
        """Write the traffic of [start, end) into the worlds; keep later steps pending.

        The openers (see ``plan_openers``) are planted just before ``end``, once.
        """
        start, end = require_utc(start, "start"), require_utc(end, "end")
        if end <= start:
            raise ValueError("history must end after it starts")
        actions = self.plan(start, end)
        if not self._openers_planted:
            actions.extend(self.plan_openers(end))
            self._openers_planted = True
        for action in actions:
            self._push(action)
        written: list[Action] = []
        while self._pending and self._pending[0][0] < end:
            _, _, action = heapq.heappop(self._pending)
            self._apply(action, action.at)
            written.append(action)
        return HistoryStats(
            tickets=sum(isinstance(a, NewTicket) for a in written),
            mentions=sum(isinstance(a, SocialPost) and a.reply_to is None for a in written),
            replies=sum(_is_reply(a) for a in written),
            bot_replies=sum(isinstance(a, TicketComment) and a.role == "bot" for a in written),
            internal_notes=sum(isinstance(a, TicketComment) and not a.public
                               for a in written),
            follow_ups=sum((isinstance(a, TicketComment) and a.role == "customer")
                           or (isinstance(a, SocialPost) and not a.by_brand
                               and a.reply_to is not None) for a in written),
            pending=len(self._pending),
        )

    async def run_live(self, now: Callable[[], datetime], *, speed: float = 1.0,
                       stop: asyncio.Event | None = None, tick: float = 0.5) -> None:
        """Keep the worlds alive: openers, then arrivals and pending steps as ``now()`` passes.

        Checks every ``tick`` seconds and never blocks the loop. ``speed`` multiplies the
        arrival rates (reply delays stay real, so SLA outcomes stay realistic). Steps
        that fell due while nothing ran are written at the current time, never
        backdated behind what a connector may already have read. Returns when ``stop``
        is set; a failing step is logged and skipped.
        """
        if speed <= 0:
            raise ValueError("speed must be positive")
        stop = stop or asyncio.Event()
        started = require_utc(now())
        # Before any history nothing has been read, so every source takes backdated
        # openers. After it, only networks that number late arrivals after what they
        # served (Mastodon) do: elsewhere a backdated post or ticket hides behind the
        # reader's cursor or floor.
        fresh = [
            source
            for source in self._sources
            if not self._openers_planted
            or (isinstance(source, SocialSource) and source.late_arrivals_seen)
        ]
        openers = sorted(self.plan_openers(started, fresh), key=lambda action: action.at)
        self._openers_planted = True
        for action in openers:
            if action.at <= started:
                self._apply(action, action.at)
            else:
                self._push(action)
        horizon = started
        lookahead = timedelta(seconds=30)
        floor = started
        while not stop.is_set():
            current = require_utc(now())
            while horizon < current + lookahead:
                for action in self.plan(horizon, horizon + lookahead, scale=speed):
                    self._push(action)
                horizon += lookahead
            floor = self._write_due(current, floor=floor)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick)

    def _write_due(self, current: datetime, *, floor: datetime | None) -> datetime:
        """Write every pending action due by ``current``, never stamped before ``floor``."""
        while self._pending and self._pending[0][0] <= current:
            _, _, action = heapq.heappop(self._pending)
            at = action.at if floor is None else max(action.at, floor)
            try:
                self._apply(action, at)
            except Exception:  # one bad step must not end the demo
                log.warning("demo traffic: could not write %s", type(action).__name__,
                            exc_info=True)
            if floor is not None:
                floor = at
        return floor if floor is not None else current

    def _push(self, action: Action) -> None:
        heapq.heappush(self._pending, (action.at, next(self._sequence), action))

    def _apply(self, action: Action, at: datetime) -> None:
        match action:
            case NewTicket():
                self._desks[action.source].open_ticket(action, at)
            case TicketComment():
                self._desks[action.source].comment(action, at)
            case TicketUpdate():
                self._desks[action.source].update(action, at)
            case SocialPost():
                self._socials[action.source].post(action, at)
        self._applied.append(action if at == action.at else dataclasses.replace(action, at=at))


def _is_reply(action: Action) -> bool:
    if isinstance(action, SocialPost):
        return action.by_brand
    return isinstance(action, TicketComment) and action.role == "agent" and action.public


def _email(name: str, domain: str, index: int | None = None) -> str:
    local = ".".join("".join(c for c in part.lower() if c.isascii() and c.isalnum())
                     for part in name.split())
    local = local.strip(".") or "someone"
    return f"{local}{'' if index is None else index}@{domain}"


def _username(base: str, index: int) -> str:
    cleaned = "".join(c for c in base.lower() if c.isascii() and c.isalnum())
    return f"{cleaned}{index}"


def _targets(seconds: dict[str, int]) -> dict[str, str]:
    return {priority: format_duration(value).replace(" ", "") for priority, value in
            seconds.items()}


# -- the environment ------------------------------------------------------------------------


def demo_config(
    sources: Sequence[Mapping[str, Any]], *, database: str | None = None
) -> dict[str, Any]:
    """The demo's configuration as TOML-shaped data, with ``sources`` as its ``[[sources]]``.

    The social policy covers the social kinds among them (6 minutes, 24/7); the desk
    policy covers the help desks by name, with per-priority targets.
    """
    monitor: dict[str, Any] = {"lookback": "8d", "timezone": "America/New_York"}
    if database is not None:
        monitor["database"] = database
    social_kinds = sorted(
        {str(s["kind"]) for s in sources if DEMO_SOURCES[str(s["kind"])].stream == "social"}
    )
    desks = [str(s["name"]) for s in sources if DEMO_SOURCES[str(s["kind"])].stream == "desk"]
    policies: list[dict[str, Any]] = []
    if social_kinds:
        social_target = format_duration(SOCIAL_TARGET)
        policies.append(
            {
                "name": "social",
                "match": {"kinds": social_kinds},
                "first_response": social_target,
                "next_response": social_target,
            }
        )
    if desks:
        policies.append(
            {
                "name": "desk",
                "match": {"sources": desks},
                "calendar": "24x7",
                "first_response": _targets(FIRST_RESPONSE_TARGETS),
                "next_response": _targets(NEXT_RESPONSE_TARGETS),
                "resolution": _targets(RESOLUTION_TARGETS),
            }
        )
    return {
        "monitor": monitor,
        "calendars": {
            "office": {
                "timezone": "America/New_York",
                "hours": {"mon-fri": "09:00-18:00"},
                "holidays": {"country": "US"},
            }
        },
        "sources": [dict(s) for s in sources],
        "policies": policies,
    }


@dataclass(frozen=True, slots=True)
class DemoEnvironment:
    """The served fakes, the model that feeds them, and the config that polls them."""

    config: Config
    traffic: TrafficModel
    sources: tuple[DemoSource, ...]
    urls: dict[str, str]
    """Source name -> base URL of the fake serving it."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@contextlib.asynccontextmanager
async def demo_environment(
    *,
    seed: int,
    sources: Sequence[str] = DEFAULT_SOURCES,
    now: Callable[[], datetime] = _utc_now,
    database: str | None = None,
) -> AsyncIterator[DemoEnvironment]:
    """Serve the fakes of ``sources`` (kinds) on loopback, with a traffic model and config.

    Nothing is written yet: call ``traffic.generate_history`` and ``traffic.run_live``.
    ``database`` sets ``[monitor] database``; by default the config's default is kept.
    An unknown kind is a ValueError naming the known ones.
    """
    chosen = make_sources(sources, now)
    traffic = TrafficModel(chosen, seed=seed)
    async with contextlib.AsyncExitStack() as stack:
        urls = {
            source.name: await stack.enter_async_context(serve(source.app())) for source in chosen
        }
        config = parse_config(
            demo_config([s.settings(urls[s.name]) for s in chosen], database=database)
        )
        yield DemoEnvironment(config=config, traffic=traffic, sources=tuple(chosen), urls=urls)


def iter_threads(actions: Sequence[Action]) -> Iterator[tuple[Stream, int, list[Action]]]:
    """Group actions by conversation, each in time order: (stream, key, actions)."""
    threads: dict[tuple[Stream, int], list[Action]] = {}
    for action in actions:
        thread: tuple[Stream, int] = (("social", action.thread)
                                      if isinstance(action, SocialPost)
                                      else ("desk", action.ticket))
        threads.setdefault(thread, []).append(action)
    for (stream, key), items in threads.items():
        yield stream, key, sorted(items, key=lambda a: a.at)
