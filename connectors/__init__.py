"""Provides the connector registry: source kind -> Connector class.

Built-in connectors are listed here explicitly; third-party ones register through the
``replywatch.connectors`` entry-point group. Core code looks connectors up here and
never imports a concrete connector module.
"""

from __future__ import annotations

import importlib
import logging
from functools import cache
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger(__name__)

BUILTIN: dict[str, str] = {
    "bluesky": "connectors.bluesky:BlueskyConnector",
    "freshdesk": "connectors.freshdesk:FreshdeskConnector",
    "github": "connectors.github:GitHubConnector",
    "helpscout": "connectors.helpscout:HelpScoutConnector",
    "intercom": "connectors.intercom:IntercomConnector",
    "mastodon": "connectors.mastodon:MastodonConnector",
    "reddit": "connectors.reddit:RedditConnector",
    "x": "connectors.x:XConnector",
    "zammad": "connectors.zammad:ZammadConnector",
    "zendesk": "connectors.zendesk:ZendeskConnector",
}
ENTRY_POINT_GROUP = "replywatch.connectors"


def _load(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


@cache
def registry() -> dict[str, Any]:
    """Every known connector class by kind: the built-ins, then entry points."""
    kinds = {kind: _load(target) for kind, target in BUILTIN.items()}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in kinds:
            log.warning("connector entry point %r ignored: kind is built in", entry.name)
            continue
        try:
            kinds[entry.name] = entry.load()
        except Exception as err:  # a broken plug-in must not take the product down
            log.warning("connector entry point %r failed to load: %s", entry.name, err)
    return kinds
