"""Provides the Discord notifier: a webhook posting one embed per alert item.

Every message sends ``allowed_mentions: {"parse": []}``, so no text in it, ours or a
customer's, can ping anyone (``@everyone``, ``@here``, ``<@id>``). Alert text also has
its Markdown backslash-escaped, so a customer's ``[click](http://evil)`` shows as typed
instead of as a link with a forged label.
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiohttp

from monitor.config import AlertTargetConfig
from monitor.events import format_instant
from monitor.notifiers.base import AlertItem, AlertMessage, post_payload
from monitor.notifiers.format import (
    MAX_ITEMS,
    escape_markdown,
    fit,
    item_view,
    join_within,
    more_line,
    quoted,
)

_EMBEDS = 10  # Discord takes at most 10 embeds per message
_EMBED_TOTAL = 5800  # ... and 6000 characters across all of them
_TITLE_CHARS = 256
_DESCRIPTION_CHARS = 4096
COLORS = {
    "breached": 0xE01E5A,
    "source_down": 0xE01E5A,
    "at_risk": 0xECB22E,
    "recovered": 0x2EB67D,
    "source_up": 0x2EB67D,
    "test": 0x1D9BD1,
}


def _embed(item: AlertItem) -> dict[str, Any]:
    view = item_view(item)
    lines = [escape_markdown(view.subject)] if view.subject else []
    lines += [f"**{escape_markdown(f.label)}:** {escape_markdown(f.value)}" for f in view.facts]
    if view.quote:
        lines.append(f"> {escape_markdown(quoted(view.quote))}")
    embed: dict[str, Any] = {
        "title": escape_markdown(view.title)[:_TITLE_CHARS],
        "description": join_within(lines, _DESCRIPTION_CHARS),
        "color": COLORS[item.kind],
        "timestamp": format_instant(item.at),
    }
    if view.link:
        embed["url"] = view.link
    return embed


def _size(embed: dict[str, Any]) -> int:
    return len(embed["title"]) + len(embed["description"])


def discord_payload(message: AlertMessage) -> dict[str, Any]:
    """The webhook payload of ``message``: the summary as content, one embed per item."""
    embeds = [_embed(item) for item in message.items[: min(MAX_ITEMS, _EMBEDS)]]
    shown = fit(embeds, _size, _EMBED_TOTAL)
    content = f"**replywatch: {escape_markdown(message.summary())}**"
    if len(message.items) > shown:
        content += f"\n{more_line(len(message.items) - shown)}"
    return {"content": content, "embeds": embeds[:shown], "allowed_mentions": {"parse": []}}


class DiscordNotifier:
    """Posts to a Discord channel webhook."""

    kind: ClassVar[str] = "discord"

    def __init__(self, target: AlertTargetConfig, session: aiohttp.ClientSession) -> None:
        self._target = target
        self._session = session

    async def send(self, message: AlertMessage) -> None:
        """Post ``message``; raise ``DeliveryError`` if Discord does not accept it."""
        await post_payload(self._session, self._target, discord_payload(message))
