"""Provides sending a report to an alert target: the summary to chat, the HTML by email.

Each chat platform gets the report's summary lines (:func:`monitor.reports.markdown.
summary_lines`) in its own dialect, escaped with the same helpers as the alerts
(:mod:`monitor.notifiers.format`): Slack and Google Chat links as the platform writes
them, Markdown for Mattermost and Discord (which also gets the HTML report as an
attached file, with every mention switched off), Teams as plain ``TextRun`` text that
no Markdown can reach, the generic webhook the whole report as signed JSON, and email
the HTML page itself with the summary as the plain-text part. Requests go through the
alerts' ``post_json`` and SMTP session; failures are the same ``DeliveryError``.
"""

from __future__ import annotations

import asyncio
import html
import json
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import aiohttp
from yarl import URL

from monitor.config import AlertTargetConfig
from monitor.events import format_instant
from monitor.notifiers.base import (
    HTTP_TIMEOUT,
    DeliveryError,
    failure_for,
    post_json,
    secret_parts,
    target_url,
)
from monitor.notifiers.email import EmailNotifier, message_id, smtp_failure
from monitor.notifiers.format import (
    break_mentions,
    clean,
    escape_markdown,
    escape_slack,
    safe_link,
)
from monitor.notifiers.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    header_value,
    sign,
)
from monitor.reports.markdown import Line, Segment

REPORT_PAYLOAD_TYPE = "replywatch.report"
_DISCORD_CONTENT = 2000  # Discord refuses a longer message content
_NAME_CHARS = 120


@dataclass(frozen=True, slots=True)
class ReportMessage:
    """A report ready to send: its summary lines, its forms, and a key for retries."""

    key: str
    title: str
    lines: tuple[Line, ...]
    markdown: str
    html: str
    html_name: str
    data: dict[str, Any]
    created_at: datetime


def _render(lines: tuple[Line, ...], piece: Callable[[Segment], str]) -> str:
    return "\n".join("".join(piece(segment) for segment in line) for line in lines)


def _outside(text: str) -> str:
    return clean(text, _NAME_CHARS)


def slack_text(lines: tuple[Line, ...]) -> str:
    """The summary in Slack mrkdwn: ``*bold*``, ``<url|label>``, only ``&<>`` escaped."""

    def piece(segment: Segment) -> str:
        text = escape_slack(
            _outside(segment.text)
            if segment.kind != "plain" and segment.kind != "bold"
            else segment.text
        )
        if segment.kind == "bold":
            return f"*{text}*"
        link = safe_link(segment.url) if segment.kind == "link" else None
        return f"<{escape_slack(link)}|{text}>" if link else text

    return _render(lines, piece)


def markdown_text(lines: tuple[Line, ...], *, angle_brackets: bool = True) -> str:
    """The summary in Markdown (Discord, Mattermost): outside text escaped, no mentions."""

    def piece(segment: Segment) -> str:
        if segment.kind == "bold":
            return f"**{segment.text}**"
        if segment.kind == "plain":
            return segment.text
        text = break_mentions(
            escape_markdown(_outside(segment.text), angle_brackets=angle_brackets)
        )
        if not angle_brackets:
            text = escape_slack(text)
        link = safe_link(segment.url) if segment.kind == "link" else None
        return f"[{text}]({link})" if link else text

    return _render(lines, piece)


def html_text(lines: tuple[Line, ...]) -> str:
    """The summary as the small HTML subset of Google Chat cards (and email)."""

    def piece(segment: Segment) -> str:
        text = html.escape(
            segment.text if segment.kind in ("plain", "bold") else _outside(segment.text),
            quote=False,
        )
        if segment.kind == "bold":
            return f"<b>{text}</b>"
        link = safe_link(segment.url) if segment.kind == "link" else None
        return f'<a href="{html.escape(link, quote=True)}">{text}</a>' if link else text

    return "<br>".join("".join(piece(segment) for segment in line) for line in lines)


def teams_card(message: ReportMessage) -> dict[str, Any]:
    """An Adaptive Card: each line a RichTextBlock of TextRuns (never read as Markdown)."""
    blocks: list[dict[str, Any]] = []
    for line in message.lines:
        runs = []
        for segment in line:
            run: dict[str, Any] = {
                "type": "TextRun",
                "text": segment.text
                if segment.kind in ("plain", "bold")
                else _outside(segment.text),
            }
            if segment.kind == "bold":
                run["weight"] = "Bolder"
            link = safe_link(segment.url) if segment.kind == "link" else None
            if link:
                run["selectAction"] = {"type": "Action.OpenUrl", "url": link}
            runs.append(run)
        blocks.append({"type": "RichTextBlock", "inlines": runs})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": blocks,
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def webhook_body(message: ReportMessage, target: str) -> dict[str, Any]:
    """The generic webhook's JSON: the summary, the HTML page and every figure."""
    return {
        "type": REPORT_PAYLOAD_TYPE,
        "version": 1,
        "target": target,
        "key": message.key,
        "created_at": format_instant(message.created_at),
        "title": message.title,
        "markdown": message.markdown,
        "html": message.html,
        "report": message.data,
    }


async def _post_form(session: aiohttp.ClientSession, url: str, form: aiohttp.FormData) -> None:
    """POST a multipart form (a file upload); the same failures as ``post_json``."""
    hidden = secret_parts(url)
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        raise DeliveryError("the configured url is not a valid URL", permanent=True) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise DeliveryError("the configured url is not an http(s) URL", permanent=True)
    try:
        async with session.post(
            parsed,
            data=form,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT),
        ) as response:
            status, headers = response.status, dict(response.headers)
            answer = await response.content.read(4096)
    except TimeoutError:
        raise DeliveryError(f"timed out after {HTTP_TIMEOUT:g}s", permanent=False) from None
    except aiohttp.ClientError as err:
        # aiohttp's texts carry the URL, whose path is the webhook's secret.
        raise DeliveryError(f"connection failed ({type(err).__name__})", permanent=False) from None
    failure = failure_for(status, headers, answer, hidden)
    if failure is not None:
        raise failure


class _ReportMailer(EmailNotifier):
    """The email notifier's SMTP session, for a mail that is not an alert."""

    async def mail(self, message: ReportMessage) -> None:
        target = self._target
        if not (target.smtp_host and target.sender and target.recipients):
            raise DeliveryError("smtp_host, sender and recipients are required", permanent=True)
        mail = EmailMessage()
        mail["Subject"] = f"[replywatch] {message.title}"
        mail["From"] = target.sender
        mail["To"] = ", ".join(target.recipients)
        mail["Date"] = format_datetime(message.created_at)
        mail["Message-ID"] = message_id(message.key, target.sender)
        mail["Auto-Submitted"] = "auto-generated"
        mail.set_content(message.markdown)
        mail.add_alternative(message.html, subtype="html")
        try:
            refused = await asyncio.to_thread(self._deliver, mail)
        except (smtplib.SMTPException, OSError) as err:
            raise smtp_failure(err, self._secrets()) from None
        if refused:
            address = sorted(refused)[0]
            raise DeliveryError(f"refused {address}: {refused[address][0]}", permanent=True)


async def send_report_message(
    target: AlertTargetConfig, session: aiohttp.ClientSession, message: ReportMessage
) -> None:
    """Send a report to one alert target; raise ``DeliveryError`` if it is not accepted."""
    if target.kind == "email":
        await _ReportMailer(target, session).mail(message)
        return
    url = target_url(target)
    if target.kind == "discord":
        content = markdown_text(message.lines)[:_DISCORD_CONTENT]
        form = aiohttp.FormData()
        form.add_field(
            "payload_json",
            json.dumps({"content": content, "allowed_mentions": {"parse": []}}, ensure_ascii=False),
            content_type="application/json",
        )
        form.add_field(
            "files[0]",
            message.html.encode("utf-8"),
            filename=message.html_name,
            content_type="text/html",
        )
        await _post_form(session, url, form)
        return
    headers: dict[str, str] = {}
    secrets: tuple[str, ...] = ()
    if target.kind == "slack":
        payload: dict[str, Any] = {"text": slack_text(message.lines)}
    elif target.kind == "mattermost":
        payload = {"text": markdown_text(message.lines, angle_brackets=False)}
    elif target.kind == "google_chat":
        payload = {
            "text": message.title,
            "cardsV2": [
                {
                    "cardId": "replywatch-report",
                    "card": {
                        "header": {"title": "replywatch", "subtitle": message.title},
                        "sections": [
                            {"widgets": [{"textParagraph": {"text": html_text(message.lines)}}]}
                        ],
                    },
                }
            ],
        }
    elif target.kind == "teams":
        payload = teams_card(message)
    else:
        payload = webhook_body(message, target.name)
    body = json.dumps(payload, ensure_ascii=False).encode()
    if target.kind == "webhook":
        # Signed exactly as the alerts are, so one receiver checks both the same way.
        timestamp = str(int(time.time()))
        headers = {TIMESTAMP_HEADER: timestamp, IDEMPOTENCY_HEADER: header_value(message.key)}
        secret = target.secret.get_secret_value() if target.secret else ""
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
            secrets = (secret,)
    await post_json(session, url, body, headers=headers, secrets=secrets)
