"""Provides the alert senders, one per target kind, and the lookup of a target's notifier.

Each notifier sends one ``AlertMessage`` to one ``[[alerts]]`` target and raises
``DeliveryError`` when it is not accepted. ``PACING`` says how far apart a target's
messages should go out to stay within its platform's documented rate.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from monitor.config import AlertTargetConfig
from monitor.notifiers.base import (
    AlertItem,
    AlertKind,
    AlertMessage,
    DeliveryError,
    Notifier,
)
from monitor.notifiers.discord import DiscordNotifier
from monitor.notifiers.email import EmailNotifier
from monitor.notifiers.google_chat import GoogleChatNotifier
from monitor.notifiers.mattermost import MattermostNotifier
from monitor.notifiers.slack import SlackNotifier
from monitor.notifiers.teams import TeamsNotifier
from monitor.notifiers.webhook import WebhookNotifier

__all__ = [
    "NOTIFIERS",
    "PACING",
    "AlertItem",
    "AlertKind",
    "AlertMessage",
    "DeliveryError",
    "Notifier",
    "notifier_for",
]

NOTIFIERS: Mapping[str, type[Notifier]] = {
    notifier.kind: notifier
    for notifier in (
        SlackNotifier,
        TeamsNotifier,
        DiscordNotifier,
        MattermostNotifier,
        GoogleChatNotifier,
        WebhookNotifier,
        EmailNotifier,
    )
}
"""Target kind (``AlertTargetConfig.kind``) -> the notifier class that sends to it."""

PACING: Mapping[str, float] = {
    "slack": 1.0,  # incoming webhooks: about one message per second
    "discord": 2.0,  # 30 messages a minute per channel
    "google_chat": 1.0,  # one message per second per space
    "teams": 1.0,
    "mattermost": 0.0,
    "webhook": 0.0,
    "email": 0.0,
}
"""Seconds to leave between two messages to one target of each kind."""


def notifier_for(target: AlertTargetConfig, session: aiohttp.ClientSession) -> Notifier:
    """The notifier that sends to ``target`` over ``session`` (``KeyError`` for no such kind)."""
    return NOTIFIERS[target.kind](target, session)
