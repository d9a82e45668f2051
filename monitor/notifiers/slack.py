"""Provides the Slack notifier: an incoming webhook posting Block Kit with a text fallback.

Every string from an alert is escaped for Slack (``&``, ``<``, ``>`` and only those),
so a customer's ``<!channel>`` or ``<http://x|login>`` shows as typed and never pings
or links. Slack answers errors as plain text (``invalid_token``, ``channel_is_archived``),
which becomes the failure's reason.
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiohttp

from monitor.config import AlertTargetConfig
from monitor.notifiers.base import AlertMessage, post_payload
from monitor.notifiers.format import (
    MAX_ITEMS,
    ItemView,
    escape_slack,
    item_view,
    join_within,
    more_line,
    quoted,
)

_SECTION_CHARS = 3000  # Slack refuses a longer section text
_LINK_CHARS = 1000


def _item_text(view: ItemView) -> str:
    lines = [f"*{escape_slack(view.title)}*"]
    if view.subject:
        subject = escape_slack(view.subject)
        link = escape_slack(view.link) if view.link else ""
        lines.append(f"<{link}|{subject}>" if 0 < len(link) <= _LINK_CHARS else subject)
    lines += [f"*{escape_slack(f.label)}:* {escape_slack(f.value)}" for f in view.facts]
    if view.quote:
        lines.append(f"> {escape_slack(quoted(view.quote))}")
    return join_within(lines, _SECTION_CHARS)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def slack_payload(message: AlertMessage) -> dict[str, Any]:
    """The Block Kit payload of ``message``: summary first, then one section per item."""
    summary = f"replywatch: {message.summary()}"
    texts = [_item_text(item_view(item)) for item in message.items[:MAX_ITEMS]]
    blocks: list[dict[str, Any]] = [_section(f"*{escape_slack(summary)}*")]
    for text in texts:
        blocks += [{"type": "divider"}, _section(text)]
    if len(message.items) > len(texts):
        more = more_line(len(message.items) - len(texts))
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    return {"text": escape_slack(summary), "blocks": blocks}


class SlackNotifier:
    """Posts to a Slack incoming webhook."""

    kind: ClassVar[str] = "slack"

    def __init__(self, target: AlertTargetConfig, session: aiohttp.ClientSession) -> None:
        self._target = target
        self._session = session

    async def send(self, message: AlertMessage) -> None:
        """Post ``message``; raise ``DeliveryError`` if Slack does not accept it."""
        await post_payload(self._session, self._target, slack_payload(message))

