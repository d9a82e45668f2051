"""Provides the ``example`` connector: the messages of a small forum API, as events.

The API (served by ``replywatch_example.fake``) lists messages oldest first by id:
``GET /api/messages?after=ID&limit=N`` answers ``{"messages": [...], "has_more": bool}``.
Ids are handed out as messages arrive, so ``after`` never skips one that came late; the
cursor is the last id returned, and the watermark is the server's ``Date`` of a page
that was not full (it showed everything up to then). A message's ``role`` says who
wrote it: ``customer``, ``staff`` (an agent) or ``bot``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, SecretStr

from connectors._http import get_json
from monitor.connector import Batch, Cursor, PollContext, SourceSettings
from monitor.errors import ParseError
from monitor.events import Actor, Event, EventKind, parse_instant

if TYPE_CHECKING:
    from connectors.fakes._base import ContractCase

ROLES = {"customer": Actor.CUSTOMER, "staff": Actor.AGENT, "bot": Actor.BOT}


class ExampleSettings(SourceSettings):
    """A forum, read with an API token."""

    kind: Literal["example"] = "example"
    base_url: str = Field(pattern=r"^https?://")
    """The forum's API root."""
    token: SecretStr
    """Sent as ``Authorization: Bearer``; a secret."""
    page_size: int = Field(default=100, ge=1, le=100)
    """Messages per page."""


def parse_page(data: Any, source: str) -> tuple[list[Event], int | None, bool]:
    """A page's events, its last message id (None when empty) and whether more follow.

    Raises:
        ParseError: the page is not the documented shape; nothing of it is returned.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("messages"), list):
        raise ParseError("example messages: expected an object with a messages list")
    events: list[Event] = []
    last: int | None = None
    for item in data["messages"]:
        try:
            last = int(item["id"])
            events.append(Event(
                source=source, conversation=str(item["thread"]), id=str(last),
                at=parse_instant(str(item["created_at"]), "created_at"),
                kind=EventKind.MESSAGE, actor=ROLES[str(item["role"])],
                author=str(item["author"]), text=str(item["body"])[:2000]))
        except (KeyError, TypeError, ValueError) as err:
            raise ParseError(f"example messages: malformed message ({err})") from err
    return events, last, bool(data.get("has_more"))


class ExampleConnector:
    """Reads a forum's messages: one page per poll."""

    kind: ClassVar[str] = "example"
    settings_model: ClassVar[type[SourceSettings]] = ExampleSettings

    def __init__(self, settings: ExampleSettings) -> None:
        self.settings = settings

    async def poll(self, cursor: Cursor | None, ctx: PollContext) -> Batch:
        """The page after the cursor's message id (from ``ctx.since`` without a cursor)."""
        after = int(cursor["after"]) if cursor and "after" in cursor else 0
        response = await get_json(
            ctx.session, f"{self.settings.base_url}/api/messages", what="example messages",
            params={"after": str(after), "limit": str(self.settings.page_size)},
            headers=self._headers(), timeout=self.settings.timeout)
        events, last, more = parse_page(response.data, self.settings.name)
        if cursor is None:  # a first poll reads from the start but keeps only ``since`` on
            events = [event for event in events if event.at >= ctx.since]
        watermark: datetime | None = None if more else (response.server_time or ctx.now())
        return Batch(tuple(events), {"after": after if last is None else last}, watermark, more)

    async def check(self, ctx: PollContext) -> str:
        """Who the token belongs to."""
        response = await get_json(ctx.session, f"{self.settings.base_url}/api/me",
                                  what="example me", headers=self._headers(),
                                  timeout=self.settings.timeout)
        name = response.data.get("name") if isinstance(response.data, Mapping) else None
        if not isinstance(name, str):
            raise ParseError("example me: no name in the answer")
        return f"authenticated as {name}"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.token.get_secret_value()}"}


def contract_case() -> ContractCase:
    """The fake as tests/test_connector_contract.py drives it (imported only then)."""
    from replywatch_example.fake import contract_case as case

    return case()
