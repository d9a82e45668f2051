"""Provides the Microsoft Teams notifier: a Workflows webhook posting an Adaptive Card 1.4.

Teams renders Markdown in a ``TextBlock`` (and in a ``FactSet``), so only our fixed
words go there. Everything taken from an alert, public text above all, is carried in a
``TextRun`` inside a ``RichTextBlock``, which Adaptive Cards show as plain text: a
customer's ``[click](http://evil)`` or ``**bold**`` stays exactly what they typed.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import aiohttp

from monitor.config import AlertTargetConfig
from monitor.notifiers.base import AlertItem, AlertMessage, post_payload
from monitor.notifiers.format import MAX_ITEMS, fit, item_view, more_line, quoted

_CARD_BYTES = 24_000  # Teams refuses a message over about 28 KB
COLORS = {
    "breached": "Attention",
    "source_down": "Attention",
    "at_risk": "Warning",
    "recovered": "Good",
    "source_up": "Good",
    "test": "Accent",
}


def _run(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextRun", "text": text, **style}


def _rich(*inlines: dict[str, Any]) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": list(inlines)}


def _container(item: AlertItem) -> dict[str, Any]:
    view = item_view(item)
    rows = [_rich(_run(view.title, weight="Bolder", color=COLORS[item.kind]))]
    if view.subject:
        rows.append(_rich(_run(view.subject, weight="Bolder")))
    rows += [
        _rich(_run(f"{fact.label}: ", weight="Bolder"), _run(fact.value)) for fact in view.facts
    ]
    if view.quote:
        rows.append(_rich(_run(quoted(view.quote), italic=True, isSubtle=True)))
    if view.link:
        rows.append({
            "type": "ActionSet",
            "actions": [{"type": "Action.OpenUrl", "title": "Open conversation", "url": view.link}],
        })
    return {"type": "Container", "separator": True, "spacing": "Medium", "items": rows}


def teams_payload(message: AlertMessage) -> dict[str, Any]:
    """The Workflows payload of ``message``: a message with one Adaptive Card attachment."""
    containers = [_container(item) for item in message.items[:MAX_ITEMS]]
    shown = fit(containers, lambda c: len(json.dumps(c, ensure_ascii=False)), _CARD_BYTES)
    body: list[dict[str, Any]] = [{
        "type": "TextBlock",
        "text": f"replywatch: {message.summary()}",
        "weight": "Bolder",
        "size": "Medium",
        "wrap": True,
    }]
    body += containers[:shown]
    if len(message.items) > shown:
        more = more_line(len(message.items) - shown)
        body.append({"type": "TextBlock", "text": more, "isSubtle": True, "wrap": True})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    }
    return {
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": None,
            "content": card,
        }],
    }


class TeamsNotifier:
    """Posts to a Microsoft Teams Workflows ("Post to a channel when a webhook request is
    received") webhook."""

    kind: ClassVar[str] = "teams"

    def __init__(self, target: AlertTargetConfig, session: aiohttp.ClientSession) -> None:
        self._target = target
        self._session = session

    async def send(self, message: AlertMessage) -> None:
        """Post ``message``; raise ``DeliveryError`` if the workflow does not accept it."""
        await post_payload(self._session, self._target, teams_payload(message))
