"""Tests the alert notifiers against local receivers: exact payloads, safety, failures."""

from __future__ import annotations

import hashlib
import hmac
import logging
import shutil
import ssl
import subprocess
import time
import traceback
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from receivers import (
    KINDS,
    SECRET,
    SIGNING_SECRET,
    ChatKind,
    Received,
    Reply,
    receive,
    server_tls_context,
    smtp_receiver,
    target_for,
    unused_url,
)

from monitor.config import AlertTargetConfig
from monitor.notifiers import NOTIFIERS, PACING, notifier_for
from monitor.notifiers.base import (
    URGENCY,
    AlertItem,
    AlertMessage,
    DeliveryError,
    failure_for,
    post_json,
)
from monitor.notifiers.discord import discord_payload
from monitor.notifiers.email import EmailNotifier, build_email, email_bodies, message_id
from monitor.notifiers.format import (
    MAX_ITEMS,
    clean,
    escape_markdown,
    escape_slack,
    item_view,
    safe_link,
)
from monitor.notifiers.google_chat import google_chat_payload
from monitor.notifiers.mattermost import escape_mattermost, mattermost_payload
from monitor.notifiers.slack import slack_payload
from monitor.notifiers.teams import teams_payload
from monitor.notifiers.webhook import WebhookNotifier, webhook_payload

T = datetime(2026, 3, 2, 14, 5, tzinfo=UTC)
HOSTILE_SNIPPET = "Hi <http://x|login>\nsecond line\u202eevil\x00" + "x" * 5000
SHORT = "Hi <http://x|login> second lineevil" + "x" * 164 + "…"
SHORT_SLACK = "Hi &lt;http://x|login&gt; second lineevil" + "x" * 164 + "…"
SHORT_DISCORD = "Hi \\<http://x\\|login\\> second lineevil" + "x" * 164 + "…"
SHORT_MATTERMOST = "Hi &lt;http://x\\|login&gt; second lineevil" + "x" * 164 + "…"
LINK = "https://acme.zendesk.com/agent/tickets/4711"

BREACHED = AlertItem(
    kind="breached", at=T, source="acme-desk", conversation="4711", metric="first_response",
    policy="desk", priority="urgent", state="breached",
    customer="Ada <!channel> @everyone @here", subject="[click](http://evil) **bold**",
    snippet=HOSTILE_SNIPPET, url=LINK, assignee="kim", channel="email",
    due_at=T - timedelta(minutes=12), late_seconds=720, target_seconds=900,
)
RECOVERED = AlertItem(
    kind="recovered", at=T, source="acme-mastodon", conversation="109", metric="first_response",
    policy="social", state="breached", customer="@bob@mastodon.example",
    url="javascript:alert(1)", late_seconds=95, target_seconds=360,
)
MESSAGE = AlertMessage(
    target="chat", key="chat:4711:breached:1", items=(BREACHED, RECOVERED), created_at=T,
)


def _run(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextRun", "text": text, **style}


def _fact(label: str, value: str) -> dict[str, Any]:
    return {"type": "RichTextBlock",
            "inlines": [_run(f"{label}: ", weight="Bolder"), _run(value)]}


def _title(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": [_run(text, weight="Bolder", **style)]}


EXPECTED: dict[ChatKind, Any] = {
    "slack": {
        "text": "replywatch: 1 breached, 1 recovered",
        "blocks": [
            {"type": "section",
             "text": {"type": "mrkdwn", "text": "*replywatch: 1 breached, 1 recovered*"}},
            {"type": "divider"},
            {"type": "section", "text": {"type": "mrkdwn", "text": (
                "*Breached: first response*\n"
                f"<{LINK}|[click](http://evil) **bold**>\n"
                "*Customer:* Ada &lt;!channel&gt; @everyone @here\n"
                "*Where:* acme-desk · email\n"
                "*Promise:* desk: first response within 15m (urgent)\n"
                "*Late:* 12m past due\n"
                "*Due:* 2026-03-02 13:53 UTC\n"
                "*Assignee:* kim\n"
                f"> “{SHORT_SLACK}”"
            )}},
            {"type": "divider"},
            {"type": "section", "text": {"type": "mrkdwn", "text": (
                "*Recovered: first response*\n"
                "Conversation 109\n"
                "*Customer:* @bob@mastodon.example\n"
                "*Where:* acme-mastodon\n"
                "*Promise:* social: first response within 6m\n"
                "*Replied:* 1m 35s late\n"
                "*Assignee:* unassigned"
            )}},
        ],
    },
    "teams": {
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": None,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": [
                    {"type": "TextBlock", "text": "replywatch: 1 breached, 1 recovered",
                     "weight": "Bolder", "size": "Medium", "wrap": True},
                    {"type": "Container", "separator": True, "spacing": "Medium", "items": [
                        _title("Breached: first response", color="Attention"),
                        _title("[click](http://evil) **bold**"),
                        _fact("Customer", "Ada <!channel> @everyone @here"),
                        _fact("Where", "acme-desk · email"),
                        _fact("Promise", "desk: first response within 15m (urgent)"),
                        _fact("Late", "12m past due"),
                        _fact("Due", "2026-03-02 13:53 UTC"),
                        _fact("Assignee", "kim"),
                        {"type": "RichTextBlock", "inlines": [
                            _run(f"“{SHORT}”", italic=True, isSubtle=True),
                        ]},
                        {"type": "ActionSet", "actions": [
                            {"type": "Action.OpenUrl", "title": "Open conversation", "url": LINK},
                        ]},
                    ]},
                    {"type": "Container", "separator": True, "spacing": "Medium", "items": [
                        _title("Recovered: first response", color="Good"),
                        _title("Conversation 109"),
                        _fact("Customer", "@bob@mastodon.example"),
                        _fact("Where", "acme-mastodon"),
                        _fact("Promise", "social: first response within 6m"),
                        _fact("Replied", "1m 35s late"),
                        _fact("Assignee", "unassigned"),
                    ]},
                ],
            },
        }],
    },
    "discord": {
        "content": "**replywatch: 1 breached, 1 recovered**",
        "embeds": [
            {
                "title": "Breached: first response",
                "description": (
                    "\\[click\\]\\(http://evil\\) \\*\\*bold\\*\\*\n"
                    "**Customer:** Ada \\<!channel\\> @everyone @here\n"
                    "**Where:** acme-desk · email\n"
                    "**Promise:** desk: first response within 15m \\(urgent\\)\n"
                    "**Late:** 12m past due\n"
                    "**Due:** 2026-03-02 13:53 UTC\n"
                    "**Assignee:** kim\n"
                    f"> “{SHORT_DISCORD}”"
                ),
                "color": 0xE01E5A,
                "timestamp": "2026-03-02T14:05:00Z",
                "url": LINK,
            },
            {
                "title": "Recovered: first response",
                "description": (
                    "Conversation 109\n"
                    "**Customer:** @bob@mastodon.example\n"
                    "**Where:** acme-mastodon\n"
                    "**Promise:** social: first response within 6m\n"
                    "**Replied:** 1m 35s late\n"
                    "**Assignee:** unassigned"
                ),
                "color": 0x2EB67D,
                "timestamp": "2026-03-02T14:05:00Z",
            },
        ],
        "allowed_mentions": {"parse": []},
    },
    "mattermost": {
        "text": (
            "#### replywatch: 1 breached, 1 recovered\n\n---\n\n"
            "**Breached: first response**\n"
            f"[\\[click\\]\\(http://evil\\) \\*\\*bold\\*\\*]({LINK})\n"
            "**Customer:** Ada &lt;!channel&gt; @\u2060everyone @\u2060here\n"
            "**Where:** acme-desk · email\n"
            "**Promise:** desk: first response within 15m \\(urgent\\)\n"
            "**Late:** 12m past due\n"
            "**Due:** 2026-03-02 13:53 UTC\n"
            "**Assignee:** kim\n"
            f"> “{SHORT_MATTERMOST}”\n\n---\n\n"
            "**Recovered: first response**\n"
            "Conversation 109\n"
            "**Customer:** @\u2060bob@\u2060mastodon.example\n"
            "**Where:** acme-mastodon\n"
            "**Promise:** social: first response within 6m\n"
            "**Replied:** 1m 35s late\n"
            "**Assignee:** unassigned"
        ),
    },
    "google_chat": {
        "text": "replywatch: 1 breached, 1 recovered",
        "cardsV2": [{"cardId": "replywatch-alerts", "card": {
            "header": {"title": "replywatch", "subtitle": "1 breached, 1 recovered"},
            "sections": [
                {"header": "<b>Breached: first response</b>", "widgets": [
                    {"textParagraph": {"text": (
                        f'<a href="{LINK}">[click](http://evil) **bold**</a><br>'
                        "<b>Customer:</b> Ada &lt;!channel&gt; @everyone @here<br>"
                        "<b>Where:</b> acme-desk · email<br>"
                        "<b>Promise:</b> desk: first response within 15m (urgent)<br>"
                        "<b>Late:</b> 12m past due<br>"
                        "<b>Due:</b> 2026-03-02 13:53 UTC<br>"
                        "<b>Assignee:</b> kim"
                    )}},
                    {"textParagraph": {"text": f"<i>“{SHORT_SLACK}”</i>"}},
                    {"buttonList": {"buttons": [
                        {"text": "Open conversation", "onClick": {"openLink": {"url": LINK}}},
                    ]}},
                ]},
                {"header": "<b>Recovered: first response</b>", "widgets": [
                    {"textParagraph": {"text": (
                        "Conversation 109<br>"
                        "<b>Customer:</b> @bob@mastodon.example<br>"
                        "<b>Where:</b> acme-mastodon<br>"
                        "<b>Promise:</b> social: first response within 6m<br>"
                        "<b>Replied:</b> 1m 35s late<br>"
                        "<b>Assignee:</b> unassigned"
                    )}},
                ]},
            ],
        }}],
    },
    "webhook": {
        "type": "replywatch.alerts",
        "version": 1,
        "target": "chat",
        "key": "chat:4711:breached:1",
        "created_at": "2026-03-02T14:05:00Z",
        "summary": "1 breached, 1 recovered",
        "items": [
            {"kind": "breached", "at": "2026-03-02T14:05:00Z", "source": "acme-desk",
             "conversation": "4711", "metric": "first_response", "policy": "desk",
             "priority": "urgent", "state": "breached",
             "customer": "Ada <!channel> @everyone @here",
             "subject": "[click](http://evil) **bold**", "snippet": SHORT, "url": LINK,
             "assignee": "kim", "channel": "email", "due_at": "2026-03-02T13:53:00Z",
             "late_seconds": 720, "error": None, "repeat": 0, "escalated_from": None,
             "target_seconds": 900},
            {"kind": "recovered", "at": "2026-03-02T14:05:00Z", "source": "acme-mastodon",
             "conversation": "109", "metric": "first_response", "policy": "social",
             "priority": None, "state": "breached", "customer": "@bob@mastodon.example",
             "subject": None, "snippet": None, "url": None, "assignee": None,
             "channel": None, "due_at": None, "late_seconds": 95, "error": None,
             "repeat": 0, "escalated_from": None, "target_seconds": 360},
        ],
    },
}

EXPECTED_TEXT = f"""replywatch: 1 breached, 1 recovered

Breached: first response
[click](http://evil) **bold**
Customer: Ada <!channel> @everyone @here
Where: acme-desk · email
Promise: desk: first response within 15m (urgent)
Late: 12m past due
Due: 2026-03-02 13:53 UTC
Assignee: kim
  “{SHORT}”
Open: {LINK}

Recovered: first response
Conversation 109
Customer: @bob@mastodon.example
Where: acme-mastodon
Promise: social: first response within 6m
Replied: 1m 35s late
Assignee: unassigned
"""

_TH = '<th align="left" style="padding-right:12px">'
EXPECTED_HTML = (
    '<!DOCTYPE html><html><body style="font-family:sans-serif">'
    "<h2>replywatch: 1 breached, 1 recovered</h2>"
    '<div style="border-left:4px solid #e01e5a;padding-left:10px;margin:14px 0">'
    f'<p><strong>Breached: first response</strong><br><a href="{LINK}">'
    "[click](http://evil) **bold**</a></p><table>"
    f"<tr>{_TH}Customer</th><td>Ada &lt;!channel&gt; @everyone @here</td></tr>"
    f"<tr>{_TH}Where</th><td>acme-desk · email</td></tr>"
    f"<tr>{_TH}Promise</th><td>desk: first response within 15m (urgent)</td></tr>"
    f"<tr>{_TH}Late</th><td>12m past due</td></tr>"
    f"<tr>{_TH}Due</th><td>2026-03-02 13:53 UTC</td></tr>"
    f"<tr>{_TH}Assignee</th><td>kim</td></tr></table>"
    f'<blockquote style="margin:6px 0;color:#555"><em>“{SHORT_SLACK}”</em></blockquote></div>'
    '<div style="border-left:4px solid #2eb67d;padding-left:10px;margin:14px 0">'
    "<p><strong>Recovered: first response</strong><br>Conversation 109</p><table>"
    f"<tr>{_TH}Customer</th><td>@bob@mastodon.example</td></tr>"
    f"<tr>{_TH}Where</th><td>acme-mastodon</td></tr>"
    f"<tr>{_TH}Promise</th><td>social: first response within 6m</td></tr>"
    f"<tr>{_TH}Replied</th><td>1m 35s late</td></tr>"
    f"<tr>{_TH}Assignee</th><td>unassigned</td></tr></table></div>"
    "</body></html>"
)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session per test, as the delivery worker holds one."""
    async with aiohttp.ClientSession() as client:
        yield client


def _message(*items: AlertItem, key: str = "k-1") -> AlertMessage:
    return AlertMessage(target="chat", key=key, items=items, created_at=T)


def _breach(number: int) -> AlertItem:
    return AlertItem(kind="breached", at=T, source="acme-desk", conversation=str(number),
                     metric="first_response", policy="desk", customer=f"Customer {number}",
                     url=f"https://acme.example/t/{number}", late_seconds=60)


# The contract types -------------------------------------------------------------------


@pytest.mark.parametrize(
    "item",
    [
        pytest.param(BREACHED, id="every-field"),
        pytest.param(AlertItem(kind="source_down", at=T, source="acme-desk", error="HTTP 503"),
                     id="source-down"),
        pytest.param(AlertItem(kind="test", at=T, source="replywatch"), id="minimal"),
    ],
)
def test_alert_item_round_trips_through_json(item: AlertItem) -> None:
    """An item stored in the outbox comes back equal, with instants in UTC ``Z`` form."""
    data = item.to_json()
    assert data["at"] == "2026-03-02T14:05:00Z"
    assert AlertItem.from_json(data) == item


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        pytest.param({"at": "2026-03-02T14:05:00Z", "source": "s"}, "kind is missing",
                     id="no-kind"),
        pytest.param({"kind": "paged", "at": "2026-03-02T14:05:00Z", "source": "s"},
                     "unknown alert kind", id="unknown-kind"),
        pytest.param({"kind": "test", "at": "2026-03-02T14:05:00", "source": "s"},
                     "no timezone", id="naive-time"),
        pytest.param({"kind": "test", "at": "2026-03-02T14:05:00Z", "source": "s",
                      "late_seconds": "12"}, "expected an integer", id="late-as-text"),
        pytest.param({"kind": "test", "at": "2026-03-02T14:05:00Z", "source": 7},
                     "expected a string", id="source-as-number"),
    ],
)
def test_alert_item_from_json_refuses_bad_data(data: dict[str, Any], problem: str) -> None:
    """A malformed outbox payload is a ValueError naming the problem, never a wrong item."""
    with pytest.raises(ValueError, match=problem):
        AlertItem.from_json(data)


def test_alert_item_refuses_naive_time() -> None:
    """Only aware instants enter an alert (a naive one is refused at construction)."""
    with pytest.raises(ValueError, match="no timezone"):
        AlertItem(kind="test", at=datetime(2026, 3, 2, 14, 5), source="s")


def _kinds(*kinds: str) -> AlertMessage:
    return _message(*(AlertItem(kind=kind, at=T, source="s") for kind in kinds))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("message", "summary"),
    [
        pytest.param(_kinds("recovered", "at_risk", "breached", "breached", "at_risk",
                            "breached", "breached"),
                     "4 breached, 2 at risk, 1 recovered", id="most-urgent-first"),
        pytest.param(_kinds("source_up", "source_down"), "1 source down, 1 source back up",
                     id="sources"),
        pytest.param(_kinds("test"), "test alert", id="test"),
    ],
)
def test_summary_counts_by_kind_most_urgent_first(message: AlertMessage, summary: str) -> None:
    """A group's summary counts each kind, in the order of URGENCY."""
    assert message.summary() == summary


def test_every_target_kind_has_a_notifier_and_a_pace() -> None:
    """Every kind a config may name has a notifier class and a pacing entry."""
    from typing import get_args

    from monitor.config import AlertKind as TargetKind

    assert set(NOTIFIERS) == set(get_args(TargetKind)) == set(PACING)
    assert URGENCY[0] == "breached"


# Safe text and links ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(LINK, LINK, id="https"),
        pytest.param("http://desk.example/t/1?a=1&b=2", "http://desk.example/t/1?a=1&b=2",
                     id="http-with-query"),
        pytest.param("https://x.example/a|b>c<d(e)'f\"g", "https://x.example/a%7Cb%3Ec%3Cd%28e%29"
                     "%27f%22g", id="link-breakers-encoded"),
        pytest.param("javascript:alert(1)", None, id="javascript"),
        pytest.param("data:text/html,<b>x</b>", None, id="data"),
        pytest.param("ftp://x.example/file", None, id="ftp"),
        pytest.param("/agent/tickets/1", None, id="relative"),
        pytest.param("https://x.example/a b", None, id="space"),
        pytest.param("https://x.example/\nInjected", None, id="newline"),
        pytest.param("https://x.example/\u202eevil", None, id="rtl-override"),
        pytest.param("https:///no-host", None, id="no-host"),
        pytest.param("https://[::1", None, id="unparseable"),
        pytest.param(None, None, id="none"),
    ],
)
def test_safe_link_lets_only_http_through(url: str | None, expected: str | None) -> None:
    """Only absolute http(s) URLs become links, with link-ending characters encoded."""
    assert safe_link(url) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("first\nsecond\r\n\tthird", "first second third", id="multi-line"),
        pytest.param("a\x00b\x1bc", "abc", id="nul-and-escape"),
        pytest.param("abc\u202edcba\u2066x", "abcdcbax", id="bidi-overrides"),
        pytest.param("x" * 5000, "x" * 99 + "…", id="5000-chars"),
        pytest.param("bad \ud800 surrogate", "bad ? surrogate", id="lone-surrogate"),
        pytest.param(None, "", id="none"),
    ],
)
def test_clean_makes_text_one_short_printable_line(text: str | None, expected: str) -> None:
    """Public text is folded to one line, stripped of controls, shortened with …."""
    assert clean(text) == expected


@pytest.mark.parametrize(
    ("text", "slack", "markdown", "mattermost"),
    [
        pytest.param("<!channel>", "&lt;!channel&gt;", "\\<!channel\\>", "&lt;!channel&gt;",
                     id="slack-broadcast"),
        pytest.param("@everyone @here", "@everyone @here", "@everyone @here",
                     "@\u2060everyone @\u2060here", id="mentions"),
        pytest.param("<http://x|login>", "&lt;http://x|login&gt;", "\\<http://x\\|login\\>",
                     "&lt;http://x\\|login&gt;", id="slack-link"),
        pytest.param("[click](http://evil)", "[click](http://evil)",
                     "\\[click\\]\\(http://evil\\)", "\\[click\\]\\(http://evil\\)",
                     id="markdown-link"),
        pytest.param("**bold** _it_ `code`", "**bold** _it_ `code`",
                     "\\*\\*bold\\*\\* \\_it\\_ \\`code\\`",
                     "\\*\\*bold\\*\\* \\_it\\_ \\`code\\`", id="emphasis"),
        pytest.param("Tom & Jerry", "Tom &amp; Jerry", "Tom & Jerry", "Tom &amp; Jerry",
                     id="ampersand"),
    ],
)
def test_escapes_per_format(text: str, slack: str, markdown: str, mattermost: str) -> None:
    """Slack escapes only & < >; Discord escapes Markdown; Mattermost both, minus mentions."""
    assert escape_slack(text) == slack
    assert escape_markdown(text) == markdown
    assert escape_mattermost(text) == mattermost


@pytest.mark.parametrize(
    ("item", "facts"),
    [
        pytest.param(
            AlertItem(kind="at_risk", at=T, source="desk", metric="next_response",
                      policy="desk", due_at=T + timedelta(minutes=15), target_seconds=3600),
            [("Where", "desk"), ("Promise", "desk: next response within 1h"),
             ("Due", "2026-03-02 14:20 UTC (15m left)"), ("Assignee", "unassigned")],
            id="at-risk-says-time-left",
        ),
        pytest.param(
            AlertItem(kind="recovered", at=T, source="desk", metric="resolution",
                      late_seconds=4500, assignee="kim"),
            [("Where", "desk"), ("Promise", "resolution"), ("Replied", "1h 15m late"),
             ("Assignee", "kim")],
            id="recovery-says-how-late",
        ),
        pytest.param(
            AlertItem(kind="source_down", at=T, source="desk",
                      error="zendesk ticket export: timed out\nafter 20s"),
            [("Since", "2026-03-02 14:05 UTC"),
             ("Error", "zendesk ticket export: timed out after 20s")],
            id="source-down-says-why",
        ),
        pytest.param(
            AlertItem(kind="breached", at=T, source="desk", metric="first_response",
                      repeat=2, escalated_from="support-chat", late_seconds=1800),
            [("Where", "desk"), ("Promise", "first response"), ("Late", "30m past due"),
             ("Assignee", "unassigned"), ("Escalated from", "support-chat")],
            id="escalated-repeat",
        ),
    ],
)
def test_item_view_says_what_a_lead_needs(item: AlertItem, facts: list[tuple[str, str]]) -> None:
    """Each kind names where, which promise, how late (or how long left) and who."""
    assert [(fact.label, fact.value) for fact in item_view(item).facts] == facts


def test_repeat_title_says_it_is_a_reminder() -> None:
    """A repeat of an open breach reads as a reminder, not a new breach."""
    item = AlertItem(kind="breached", at=T, source="desk", metric="first_response", repeat=2)
    assert item_view(item).title == "Still breached: first response (reminder 2)"


# Exact payloads against the receivers -------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_payload_is_exact_and_inert(kind: ChatKind, session: aiohttp.ClientSession) -> None:
    """Each kind posts exactly the expected JSON, hostile public text made inert."""
    async with receive(kind) as receiver:
        await notifier_for(target_for(receiver), session).send(MESSAGE)
    assert receiver.payloads() == [EXPECTED[kind]]
    assert receiver.requests[0].header("Content-Type") == "application/json; charset=utf-8"


def _shown(kind: ChatKind, payload: Any) -> tuple[int, str]:
    """How many items a payload shows, and its whole text (to find "and N more")."""
    import json

    if kind == "slack":
        count = sum(1 for b in payload["blocks"] if b["type"] == "section") - 1
    elif kind == "teams":
        body = payload["attachments"][0]["content"]["body"]
        count = sum(1 for b in body if b["type"] == "Container")
    elif kind == "discord":
        count = len(payload["embeds"])
    elif kind == "mattermost":
        count = payload["text"].count("**Breached")
    elif kind == "google_chat":
        count = sum(1 for s in payload["cardsV2"][0]["card"]["sections"] if "header" in s)
    else:
        count = len(payload["items"])
    return count, json.dumps(payload, ensure_ascii=False)


@pytest.mark.parametrize("kind", KINDS)
async def test_large_group_is_capped_with_and_n_more(
    kind: ChatKind, session: aiohttp.ClientSession
) -> None:
    """Chat shows the first 10 items and "and 3 more"; the generic webhook carries all 13."""
    message = _message(*(_breach(n) for n in range(13)))
    async with receive(kind) as receiver:
        await notifier_for(target_for(receiver), session).send(message)
    count, text = _shown(kind, receiver.payloads()[0])
    if kind == "webhook":
        assert count == 13
        assert "more" not in text
    else:
        assert count == MAX_ITEMS
        assert "and 3 more" in text
    assert "13 breached" in text


def test_discord_fits_embeds_within_its_total_size() -> None:
    """Ten bulky items do not overflow Discord's 6,000 characters: fewer embeds, and N more."""
    bulky = [
        AlertItem(kind="breached", at=T, source="s" * 100, metric="first_response",
                  policy="p" * 100, customer="*" * 100, subject="_" * 100,
                  snippet="<" * 500, assignee="a" * 100, channel="c" * 100)
        for _ in range(10)
    ]
    payload = discord_payload(_message(*bulky))
    total = sum(len(e["title"]) + len(e["description"]) for e in payload["embeds"])
    assert total <= 6000
    assert 0 < len(payload["embeds"]) < 10
    assert payload["content"].endswith(f"and {10 - len(payload['embeds'])} more")


def test_teams_text_blocks_hold_only_our_words() -> None:
    """Teams renders Markdown in TextBlocks: every public string sits in a TextRun instead."""
    body = teams_payload(MESSAGE)["attachments"][0]["content"]["body"]
    blocks = [b["text"] for b in body if b["type"] == "TextBlock"]
    assert blocks == ["replywatch: 1 breached, 1 recovered"]


# Failures: the status policy ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "reply", "permanent", "retry_after", "reason"),
    [
        pytest.param("slack", Reply.text(403, "invalid_token"), True, None,
                     "HTTP 403: invalid_token", id="slack-403-invalid-token"),
        pytest.param("slack", Reply.text(410, "channel_is_archived"), True, None,
                     "HTTP 410: channel_is_archived", id="slack-410-archived"),
        pytest.param("slack", Reply.text(404, "no_service"), True, None,
                     "HTTP 404: no_service", id="slack-404-no-service"),
        pytest.param("slack", Reply.text(400, "invalid_blocks"), True, None,
                     "HTTP 400: invalid_blocks", id="slack-400"),
        pytest.param("slack", Reply.text(429, "rate_limited", retry_after=2), False, 2.0,
                     "HTTP 429: rate_limited", id="slack-429-retry-after"),
        pytest.param("slack", Reply(429), False, None, "HTTP 429: Too Many Requests",
                     id="slack-429-no-hint"),
        pytest.param("slack", Reply.text(500, "rollup_error"), False, None,
                     "HTTP 500: rollup_error", id="slack-500"),
        pytest.param("discord", Reply.json(404, {"message": "Unknown Webhook", "code": 10015}),
                     True, None, "HTTP 404: Unknown Webhook (code 10015)",
                     id="discord-404-unknown-webhook"),
        pytest.param("discord", Reply.json(429, {"message": "You are being rate limited.",
                                                 "retry_after": 1.5, "global": False}),
                     False, 1.5, "HTTP 429: You are being rate limited.",
                     id="discord-429-body-retry-after"),
        pytest.param("teams", Reply.json(400, {"error": {
            "code": "InvalidRequestContent", "message": "The input body did not match."}}),
                     True, None, "HTTP 400: InvalidRequestContent: The input body did not match.",
                     id="teams-400"),
        pytest.param("teams", Reply(502), False, None, "HTTP 502: Bad Gateway", id="teams-502"),
        pytest.param("mattermost", Reply.json(400, {
            "id": "web.incoming_webhook.invalid.app_error", "message": "Invalid webhook.",
            "detailed_error": "", "status_code": 400}), True, None,
                     "HTTP 400: Invalid webhook.", id="mattermost-400"),
        pytest.param("google_chat", Reply.json(403, {"error": {
            "code": 403, "message": "The caller does not have permission",
            "status": "PERMISSION_DENIED"}}), True, None,
                     "HTTP 403: PERMISSION_DENIED: The caller does not have permission",
                     id="google-chat-403"),
        pytest.param("webhook", Reply.text(401, "bad signature"), True, None,
                     "HTTP 401: bad signature", id="webhook-401"),
        pytest.param("webhook", Reply(503, retry_after=7), False, 7.0,
                     "HTTP 503: Service Unavailable", id="webhook-503-retry-after"),
        pytest.param("webhook", Reply(408), False, None, "HTTP 408: Request Timeout",
                     id="webhook-408"),
        pytest.param("webhook", Reply(301, headers={"Location": "http://127.0.0.1:9/x"}), True,
                     None, "HTTP 301: Moved Permanently (unexpected redirect; check the url)",
                     id="webhook-redirect-not-followed"),
    ],
)
async def test_http_failures_map_to_delivery_errors(
    kind: ChatKind, reply: Reply, permanent: bool, retry_after: float | None, reason: str,
    session: aiohttp.ClientSession,
) -> None:
    """429/408/5xx are transient with the wait asked for; 3xx/4xx permanent, with the reason."""
    async with receive(kind) as receiver:
        receiver.script(reply)
        with pytest.raises(DeliveryError) as caught:
            await notifier_for(target_for(receiver), session).send(MESSAGE)
    assert (caught.value.reason, caught.value.permanent) == (reason, permanent)
    assert caught.value.retry_after == retry_after
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("kind", ["teams", "google_chat"])
async def test_url_is_sent_exactly_as_configured(
    kind: ChatKind, session: aiohttp.ClientSession
) -> None:
    """The signed query of a Teams or Google Chat URL reaches the platform byte for byte."""
    async with receive(kind) as receiver:
        await notifier_for(target_for(receiver), session).send(MESSAGE)
    assert receiver.base + receiver.requests[0].raw_path == receiver.url


def test_retry_after_as_http_date() -> None:
    """A Retry-After given as an HTTP date becomes the seconds until then."""
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    failure = failure_for(429, {"Retry-After": when}, b"", ())
    assert failure is not None
    assert failure.retry_after is not None
    assert 80 <= failure.retry_after <= 90


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_any_2xx_is_accepted(status: int) -> None:
    """Every 2xx is a delivery (Teams answers 202, Discord 204)."""
    assert failure_for(status, {}, b"", ()) is None


async def test_status_sequence_then_success_resends_the_same_body(
    session: aiohttp.ClientSession,
) -> None:
    """[429 Retry-After: 2, 500, 200]: two transient failures, then delivered, same body."""
    async with receive("slack") as receiver:
        receiver.script(Reply(429, retry_after=2), Reply(500))
        notifier = notifier_for(target_for(receiver), session)
        outcomes: list[tuple[bool, float | None] | str] = []
        for _ in range(3):
            try:
                await notifier.send(MESSAGE)
                outcomes.append("delivered")
            except DeliveryError as err:
                outcomes.append((err.permanent, err.retry_after))
    assert outcomes == [(False, 2.0), (False, None), "delivered"]
    assert len({request.body for request in receiver.requests}) == 1


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        pytest.param(Reply(reset=True), "connection failed (ServerDisconnectedError)",
                     id="dropped-before-answer"),
        pytest.param(Reply(delay=0.4), "timed out after 0.1s", id="timeout"),
    ],
)
async def test_network_failures_are_transient(
    reply: Reply, reason: str, session: aiohttp.ClientSession
) -> None:
    """A dropped connection or a timeout is transient and names no URL."""
    async with receive("webhook") as receiver:
        receiver.script(reply)
        with pytest.raises(DeliveryError) as caught:
            await post_json(session, receiver.url, b"{}", timeout=0.1)
    assert (caught.value.reason, caught.value.permanent) == (reason, False)


async def test_connection_refused_is_transient(session: aiohttp.ClientSession) -> None:
    """Nobody listening is transient: the chat may come back."""
    target = target_for(unused_url("slack"), kind="slack")
    with pytest.raises(DeliveryError) as caught:
        await notifier_for(target, session).send(MESSAGE)
    assert caught.value.permanent is False
    assert caught.value.reason == "connection failed (ClientConnectorError)"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        pytest.param("ftp://127.0.0.1/hook", "the configured url is not an http(s) URL",
                     id="ftp"),
        pytest.param("not a url", "the configured url is not an http(s) URL", id="garbage"),
        pytest.param("http://", "the configured url is not an http(s) URL", id="no-host"),
    ],
)
async def test_unusable_url_is_permanent(
    url: str, reason: str, session: aiohttp.ClientSession
) -> None:
    """A target URL that can never work fails permanently, without a request."""
    with pytest.raises(DeliveryError) as caught:
        await notifier_for(target_for(url, kind="slack"), session).send(MESSAGE)
    assert (caught.value.reason, caught.value.permanent) == (reason, True)


def _leaks(err: BaseException, records: list[logging.LogRecord], secret: str) -> list[str]:
    texts = [str(err), repr(err), "".join(traceback.format_exception(err))]
    texts += [record.getMessage() for record in records]
    return [text for text in texts if secret in text]


@pytest.mark.parametrize("kind", KINDS)
async def test_no_secret_in_errors_or_logs(
    kind: ChatKind, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A platform that echoes the webhook URL, or a refused connection, never leaks the token."""
    caplog.set_level(logging.DEBUG)
    errors: list[DeliveryError] = []
    async with receive(kind) as receiver:
        receiver.script(Reply.text(400, f"bad hook {receiver.url} (token {SECRET})"))
        for target in (target_for(receiver), target_for(unused_url(kind), kind=kind)):
            with pytest.raises(DeliveryError) as caught:
                await notifier_for(target, session).send(MESSAGE)
            errors.append(caught.value)
    assert errors[0].reason.startswith("HTTP 400: bad hook ***")
    ours = [r for r in caplog.records if not r.name.startswith(("aiohttp.server", "aiohttp.web"))]
    assert [r.name for r in ours].count("monitor.notifiers.base") == 2
    for err in errors:
        assert _leaks(err, ours, SECRET) == []
        assert _leaks(err, ours, SIGNING_SECRET) == []


# The generic webhook's signature ------------------------------------------------------


def verify(request: Received, secret: str, now: float, seen: set[str]) -> str:
    """An independent receiver-side check, written from docs/alerts.md: "ok" or the refusal."""
    timestamp = request.header("X-Replywatch-Timestamp") or ""
    signature = request.header("X-Replywatch-Signature") or ""
    key = request.header("Idempotency-Key") or ""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > 300:
        return "stale"
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256)
    if not hmac.compare_digest("sha256=" + mac.hexdigest(), signature):
        return "bad signature"
    if key in seen:
        return "duplicate"
    seen.add(key)
    return "ok"


async def test_webhook_signature_verifies_and_rejects_replays(
    session: aiohttp.ClientSession,
) -> None:
    """A verifier accepts the genuine request; refuses tampered, foreign, stale or repeated."""
    async with receive("webhook") as receiver:
        receiver.script(Reply(500))
        notifier = notifier_for(target_for(receiver), session)
        with pytest.raises(DeliveryError):
            await notifier.send(MESSAGE)
        await notifier.send(MESSAGE)
    first, retry = receiver.requests
    now = time.time()
    tampered = Received(first.method, first.path, first.query, first.headers,
                        first.body.replace(b"breached", b"resolved"), first.at)
    seen: set[str] = set()
    assert verify(first, SIGNING_SECRET, now, seen) == "ok"
    assert verify(retry, SIGNING_SECRET, now, seen) == "duplicate"
    assert verify(tampered, SIGNING_SECRET, now, set()) == "bad signature"
    assert verify(first, "another-secret", now, set()) == "bad signature"
    assert verify(first, SIGNING_SECRET, now + 600, set()) == "stale"
    assert first.header("Idempotency-Key") == retry.header("Idempotency-Key") == MESSAGE.key


async def test_webhook_headers_are_exact(session: aiohttp.ClientSession) -> None:
    """With a fixed clock the timestamp and signature headers are exactly the documented ones."""
    async with receive("webhook") as receiver:
        notifier = WebhookNotifier(target_for(receiver), session, clock=lambda: 1772460300.9)
        await notifier.send(MESSAGE)
    request = receiver.requests[0]
    digest = hmac.new(SIGNING_SECRET.encode(), b"1772460300." + request.body,
                      hashlib.sha256).hexdigest()
    assert request.header("X-Replywatch-Timestamp") == "1772460300"
    assert request.header("X-Replywatch-Signature") == f"sha256={digest}"
    assert request.json() == webhook_payload(MESSAGE)


async def test_webhook_without_secret_is_unsigned(session: aiohttp.ClientSession) -> None:
    """A webhook target with no secret sends no signature header (and says so in the docs)."""
    async with receive("webhook") as receiver:
        target = AlertTargetConfig.model_validate(
            {"name": "hook", "kind": "webhook", "url": receiver.url})
        await notifier_for(target, session).send(MESSAGE)
    assert receiver.requests[0].header("X-Replywatch-Signature") is None
    assert receiver.requests[0].header("Idempotency-Key") == MESSAGE.key


def test_idempotency_key_that_cannot_be_a_header_is_hashed() -> None:
    """A key with characters a header cannot carry is sent as its SHA-256, the same each time."""
    from monitor.notifiers.webhook import header_value

    odd = "chat:ticket\nwith newline:é"
    assert header_value(odd) == hashlib.sha256(odd.encode()).hexdigest()
    assert header_value("chat:4711:breached:1") == "chat:4711:breached:1"


# The receivers the delivery half relies on --------------------------------------------


async def test_receiver_rate_limits_like_slack(session: aiohttp.ClientSession) -> None:
    """With min_interval set, a second message within it gets 429 with Retry-After."""
    async with receive("slack") as receiver:
        receiver.min_interval = 5.0
        notifier = notifier_for(target_for(receiver), session)
        await notifier.send(MESSAGE)
        with pytest.raises(DeliveryError) as caught:
            await notifier.send(MESSAGE)
    assert (caught.value.permanent, caught.value.retry_after) == (False, 5.0)


# Email --------------------------------------------------------------------------------


def _email_target(port: int, security: str = "none", **settings: Any) -> AlertTargetConfig:
    return AlertTargetConfig.model_validate({
        "name": "mail", "kind": "email", "smtp_host": "127.0.0.1", "smtp_port": port,
        "smtp_security": security, "sender": "replywatch@acme.example",
        "recipients": ["lead@acme.example", "oncall@acme.example"], **settings,
    })


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command line."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    return str(cert), str(key)


def _trusting(certificate: tuple[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certificate[0])


async def test_email_is_exact_multipart(session: aiohttp.ClientSession) -> None:
    """The mail's headers, text part and HTML part are exact, hostile text escaped."""
    async with smtp_receiver() as server:
        await notifier_for(_email_target(server.port), session).send(MESSAGE)
    (mail,) = server.mails
    parsed = mail.message()
    assert mail.recipients == ("lead@acme.example", "oncall@acme.example")
    assert parsed["Subject"] == "[replywatch] 1 breached, 1 recovered"
    assert parsed["From"] == "replywatch@acme.example"
    assert parsed["To"] == "lead@acme.example, oncall@acme.example"
    assert parsed["Message-ID"] == "<" + hashlib.sha256(
        MESSAGE.key.encode()).hexdigest() + "@acme.example>"
    assert parsed["Date"] == "Mon, 02 Mar 2026 14:05:00 +0000"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(("plain",))
    page = parsed.get_body(("html",))
    assert text is not None
    assert page is not None
    # SMTP carries CRLF line ends; the content is compared with plain newlines.
    assert text.get_content().replace("\r\n", "\n") == EXPECTED_TEXT
    assert page.get_content().rstrip("\r\n") == EXPECTED_HTML


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param("support-chat.4711.breached", "<support-chat.4711.breached@acme.example>",
                     id="plain-key-kept"),
        pytest.param("a:b c", "<" + hashlib.sha256(b"a:b c").hexdigest() + "@acme.example>",
                     id="odd-key-hashed"),
    ],
)
def test_message_id_comes_from_the_key(key: str, expected: str) -> None:
    """The same key always gives the same Message-ID, in the sender's domain."""
    assert message_id(key, "replywatch@acme.example") == expected


def test_email_html_escapes_every_public_string() -> None:
    """No raw markup from the public reaches the HTML part."""
    item = AlertItem(kind="breached", at=T, source="s", customer="<script>alert(1)</script>",
                     subject='"><img src=x onerror=alert(1)>', snippet="<b>hi</b> & bye",
                     url='https://x.example/"onmouseover="alert(1)')
    _, page = email_bodies(_message(item))
    assert "<script>" not in page
    assert "<img" not in page
    assert "<b>hi" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'href="https://x.example/%22onmouseover=%22alert%281%29"' in page


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_email_over_tls_with_login(
    security: str, certificate: tuple[str, str], session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """STARTTLS and implicit TLS verify the certificate, log in encrypted, and deliver."""
    caplog.set_level(logging.DEBUG)
    tls = server_tls_context(*certificate)
    async with smtp_receiver(security=security, tls=tls,  # type: ignore[arg-type]
                             login=("ops", "pa55-w0rd-secret")) as server:
        target = _email_target(server.port, security, username="ops",
                               password="pa55-w0rd-secret")
        await EmailNotifier(target, session, ssl_context=_trusting(certificate)).send(MESSAGE)
    (mail,) = server.mails
    assert (mail.encrypted, mail.login) == (True, "ops")
    assert all("pa55-w0rd-secret" not in record.getMessage() for record in caplog.records)


async def test_email_refuses_an_untrusted_certificate(
    certificate: tuple[str, str], session: aiohttp.ClientSession
) -> None:
    """A certificate the system does not trust is a permanent failure; nothing is sent."""
    async with smtp_receiver(security="starttls", tls=server_tls_context(*certificate)) as server:
        with pytest.raises(DeliveryError) as caught:
            await notifier_for(_email_target(server.port, "starttls"), session).send(MESSAGE)
    assert (caught.value.reason, caught.value.permanent) == (
        "TLS certificate verification failed", True)
    assert server.mails == []


async def test_email_never_falls_back_to_clear_text(session: aiohttp.ClientSession) -> None:
    """STARTTLS asked for but not offered: refused at once, the mail is not sent in clear."""
    async with smtp_receiver() as server:
        with pytest.raises(DeliveryError) as caught:
            await notifier_for(_email_target(server.port, "starttls"), session).send(MESSAGE)
    assert (caught.value.reason, caught.value.permanent) == (
        "the server does not offer STARTTLS", True)
    assert server.mails == []


@pytest.mark.parametrize(
    ("data_reply", "refuse", "reason", "permanent"),
    [
        pytest.param("451 4.3.0 Try again later", {}, "server refused: 451 4.3.0 Try again later",
                     False, id="data-451-transient"),
        pytest.param("554 5.6.0 Message rejected", {}, "server refused: 554 5.6.0 Message rejected",
                     True, id="data-554-permanent"),
        pytest.param(None, {"lead@acme.example": "550 5.1.1 No such user",
                            "oncall@acme.example": "550 5.1.1 No such user"},
                     "recipients refused: 550 5.1.1 No such user", True, id="all-refused"),
        pytest.param(None, {"oncall@acme.example": "450 4.2.1 Mailbox busy",
                            "lead@acme.example": "451 4.3.0 Later"},
                     "recipients refused: 451 4.3.0 Later", False, id="all-deferred"),
        pytest.param(None, {"oncall@acme.example": "550 5.1.1 No such user"},
                     "sent to 1 of 2 recipients; refused oncall@acme.example: 550 5.1.1 No such "
                     "user", True, id="one-refused"),
    ],
)
async def test_email_server_answers_map_to_delivery_errors(
    data_reply: str | None, refuse: dict[str, str], reason: str, permanent: bool,
    session: aiohttp.ClientSession,
) -> None:
    """SMTP 4xx are transient, 5xx permanent, each with the server's own words."""
    async with smtp_receiver() as server:
        if data_reply:
            server.data_replies.append(data_reply)
        server.refuse.update(refuse)
        with pytest.raises(DeliveryError) as caught:
            await notifier_for(_email_target(server.port), session).send(MESSAGE)
    assert (caught.value.reason, caught.value.permanent) == (reason, permanent)


async def test_email_wrong_password_is_permanent_and_hidden(
    certificate: tuple[str, str], session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Refused credentials stop at once, and the password appears in no error or log."""
    caplog.set_level(logging.DEBUG)
    tls = server_tls_context(*certificate)
    async with smtp_receiver(security="tls", tls=tls, login=("ops", "right")) as server:
        target = _email_target(server.port, "tls", username="ops", password="wr0ng-secret-pw")
        with pytest.raises(DeliveryError) as caught:
            await EmailNotifier(target, session, ssl_context=_trusting(certificate)).send(MESSAGE)
    assert caught.value.permanent is True
    assert caught.value.reason.startswith("login refused: 535")
    assert _leaks(caught.value, caplog.records, "wr0ng-secret-pw") == []


async def test_email_connection_refused_is_transient(session: aiohttp.ClientSession) -> None:
    """No SMTP server listening is transient."""
    port = int(unused_url().split(":")[2].split("/")[0])
    with pytest.raises(DeliveryError) as caught:
        await notifier_for(_email_target(port), session).send(MESSAGE)
    assert (caught.value.reason, caught.value.permanent) == (
        "connection failed (ConnectionRefusedError)", False)


# Properties: untrusted text never crashes and never escapes ------------------------------

_ANY_TEXT = st.text(max_size=300) | st.sampled_from([
    "<!channel>", "@everyone", "@here", "<http://x|login>", "[click](http://evil)", "**bold**",
    "a\x00b", "\u202eevil", "line\nbreak", "x" * 5000,
])


@settings(max_examples=150, deadline=None)
@given(text=_ANY_TEXT)
@example(text="bad \ud800 surrogate")
def test_escaped_text_is_inert(text: str) -> None:
    """Whatever the public writes, no format gets a live tag, mention or link from it."""
    import html
    import re

    line = clean(text, 200)
    assert len(line) <= 200
    assert not set(line) & {"\n", "\r", "\x00", "\u202e"}
    assert not set(escape_slack(line)) & {"<", ">"}
    assert re.search(r"@[\w.\-]", escape_mattermost(line)) is None
    assert "<" not in html.escape(line)
    assert re.search(r"(?<!\\)[\[\]()]", escape_markdown(line)) is None


@settings(max_examples=60, deadline=None)
@given(customer=_ANY_TEXT, subject=_ANY_TEXT, snippet=_ANY_TEXT, url=_ANY_TEXT)
@example(customer="\ud800", subject="\udfff", snippet="\x00", url="https://\ud800.example")
def test_no_payload_crashes_on_untrusted_text(
    customer: str, subject: str, snippet: str, url: str
) -> None:
    """Every format builds and encodes a message whatever the public text is."""
    import json

    item = AlertItem(kind="breached", at=T, source="s", customer=customer, subject=subject,
                     snippet=snippet, url=url, assignee=customer, channel=subject)
    message = _message(item)
    for build in (slack_payload, teams_payload, discord_payload, mattermost_payload,
                  google_chat_payload, webhook_payload):
        json.dumps(build(message), ensure_ascii=False).encode()
    mail = build_email(message, sender="r@acme.example", recipients=["l@acme.example"])
    assert mail.as_bytes()


@settings(max_examples=150, deadline=None)
@given(url=_ANY_TEXT | st.from_regex(r"\Ahttps?://[a-z.]{1,20}/[ -~]{0,40}\Z"))
def test_safe_links_are_http_and_cannot_end_early(url: str) -> None:
    """A link is http(s) and has none of the characters that end a link in any format."""
    link = safe_link(url)
    if link is not None:
        assert link.startswith(("http://", "https://"))
        assert not set(link) & set(" <>|()\"'`\n\t\\")


def test_secret_fixtures_really_are_in_the_urls() -> None:
    """The leak tests mean something: every receiver URL carries the token or a signing key."""
    assert all(SECRET in target_for(unused_url(kind), kind=kind).url.get_secret_value()  # type: ignore[union-attr]
               for kind in KINDS)
