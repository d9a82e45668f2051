"""Provides the Mattermost notifier: an incoming webhook posting Markdown text.

Alert text has ``&``, ``<`` and ``>`` escaped as entities, as for Slack. Mattermost
renders full Markdown and notifies on a plain ``@name``, ``@here`` or ``@channel``,
so text also has its Markdown punctuation backslash-escaped (no forged
``[label](url)``) and an invisible word joiner after each ``@`` (no mention).
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiohttp

from monitor.config import AlertTargetConfig
from monitor.notifiers.base import AlertMessage, post_payload
from monitor.notifiers.format import (
    MAX_ITEMS,
    ItemView,
    break_mentions,
    escape_markdown,
    escape_slack,
    fit,
    item_view,
    more_line,
    quoted,
)

_TEXT_CHARS = 16000  # Mattermost keeps posts up to 16383 characters


def escape_mattermost(text: str) -> str:
    """Make ``text`` inert in a Mattermost post: no formatting, link or mention."""
    return escape_slack(break_mentions(escape_markdown(text, angle_brackets=False)))


def _item_text(view: ItemView) -> str:
    lines = [f"**{escape_mattermost(view.title)}**"]
    if view.subject:
        subject = escape_mattermost(view.subject)
        lines.append(f"[{subject}]({view.link})" if view.link else subject)
    lines += [f"**{escape_mattermost(f.label)}:** {escape_mattermost(f.value)}" for f in view.facts]
    if view.quote:
        lines.append(f"> {escape_mattermost(quoted(view.quote))}")
    return "\n".join(lines)


def mattermost_payload(message: AlertMessage) -> dict[str, Any]:
    """The webhook payload of ``message``: a heading with the summary, then each item."""
    heading = f"#### replywatch: {escape_mattermost(message.summary())}"
    texts = [_item_text(item_view(item)) for item in message.items[:MAX_ITEMS]]
    shown = fit(texts, lambda text: len(text) + 7, _TEXT_CHARS - len(heading) - 40)
    parts = [heading, *texts[:shown]]
    if len(message.items) > shown:
        parts.append(more_line(len(message.items) - shown))
    return {"text": "\n\n---\n\n".join(parts)}


class MattermostNotifier:
    """Posts to a Mattermost incoming webhook."""

    kind: ClassVar[str] = "mattermost"

    def __init__(self, target: AlertTargetConfig, session: aiohttp.ClientSession) -> None:
        self._target = target
        self._session = session

    async def send(self, message: AlertMessage) -> None:
        """Post ``message``; raise ``DeliveryError`` if Mattermost does not accept it."""
        await post_payload(self._session, self._target, mattermost_payload(message))
