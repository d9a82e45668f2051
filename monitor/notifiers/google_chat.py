"""Provides the Google Chat notifier: a space webhook posting a cardsV2 card.

Card text is a small subset of HTML, so every string from an alert is escaped with
``html.escape``: a customer's ``<a href>`` or ``<users/all>`` shows as typed, and card
text never mentions anyone. The message's plain ``text`` (what notifications show)
is only the summary, our own words.
"""

from __future__ import annotations

import html
import json
from typing import Any, ClassVar

import aiohttp

from monitor.config import AlertTargetConfig
from monitor.notifiers.base import AlertItem, AlertMessage, post_payload
from monitor.notifiers.format import MAX_ITEMS, fit, item_view, more_line, quoted

_CARD_BYTES = 28_000  # Google Chat refuses a card over 32 KB


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def _section(item: AlertItem) -> dict[str, Any]:
    view = item_view(item)
    lines = []
    if view.subject:
        subject = _escape(view.subject)
        link = html.escape(view.link, quote=True) if view.link else None
        lines.append(f'<a href="{link}">{subject}</a>' if link else subject)
    lines += [f"<b>{_escape(fact.label)}:</b> {_escape(fact.value)}" for fact in view.facts]
    widgets: list[dict[str, Any]] = [{"textParagraph": {"text": "<br>".join(lines)}}]
    if view.quote:
        widgets.append({"textParagraph": {"text": f"<i>{_escape(quoted(view.quote))}</i>"}})
    if view.link:
        widgets.append({"buttonList": {"buttons": [
            {"text": "Open conversation", "onClick": {"openLink": {"url": view.link}}},
        ]}})
    return {"header": f"<b>{_escape(view.title)}</b>", "widgets": widgets}


def google_chat_payload(message: AlertMessage) -> dict[str, Any]:
    """The webhook payload of ``message``: the summary as text, the items as a card."""
    summary = message.summary()
    sections = [_section(item) for item in message.items[:MAX_ITEMS]]
    shown = fit(sections, lambda s: len(json.dumps(s, ensure_ascii=False)), _CARD_BYTES)
    sections = sections[:shown]
    if len(message.items) > shown:
        more = more_line(len(message.items) - shown)
        sections.append({"widgets": [{"textParagraph": {"text": more}}]})
    card = {"header": {"title": "replywatch", "subtitle": summary}, "sections": sections}
    return {
        "text": f"replywatch: {summary}",
        "cardsV2": [{"cardId": "replywatch-alerts", "card": card}],
    }


class GoogleChatNotifier:
    """Posts to a Google Chat space's incoming webhook."""

    kind: ClassVar[str] = "google_chat"

    def __init__(self, target: AlertTargetConfig, session: aiohttp.ClientSession) -> None:
        self._target = target
        self._session = session

    async def send(self, message: AlertMessage) -> None:
        """Post ``message``; raise ``DeliveryError`` if Google Chat does not accept it."""
        await post_payload(self._session, self._target, google_chat_payload(message))
