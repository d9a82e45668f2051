"""Provides the email notifier: SMTP with STARTTLS or implicit TLS, plain text plus HTML.

The standard library's ``smtplib`` runs in a worker thread (``asyncio.to_thread``): one
short session per message needs no extra dependency. STARTTLS is required when asked
for (a server that does not offer it is refused, never used in clear), certificates
are verified, and the login happens only after the channel is encrypted. The
Message-ID is derived from the message key, so a mail system that deduplicates sees a
retry as the same mail. Everything from an alert is ``html.escape``d in the HTML part.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime
from typing import ClassVar

import aiohttp

from monitor.config import AlertTargetConfig
from monitor.notifiers.base import AlertMessage, DeliveryError, redact
from monitor.notifiers.format import ItemView, clean, item_view, more_line, quoted

MAX_EMAIL_ITEMS = 50
"""An email lists up to this many items, then says "and N more"."""
SMTP_TIMEOUT = 30.0
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
_ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_REASON_CHARS = 200
COLORS = {
    "breached": "#e01e5a",
    "source_down": "#e01e5a",
    "at_risk": "#ecb22e",
    "recovered": "#2eb67d",
    "source_up": "#2eb67d",
    "test": "#1d9bd1",
}


def message_id(key: str, sender: str) -> str:
    """A Message-ID made from ``key``: the same key always gives the same id."""
    local = key if len(key) <= 200 and _ATEXT.match(key) else hashlib.sha256(
        key.encode("utf-8", "replace")).hexdigest()
    domain = sender.rpartition("@")[2].strip(" >")
    if not _DOMAIN.match(domain):
        domain = "replywatch.invalid"
    return f"<{local}@{domain}>"


def _text_item(view: ItemView) -> list[str]:
    lines = [view.title]
    if view.subject:
        lines.append(view.subject)
    lines += [f"{fact.label}: {fact.value}" for fact in view.facts]
    if view.quote:
        lines.append(f"  {quoted(view.quote)}")
    if view.link:
        lines.append(f"Open: {view.link}")
    return lines


def _html_item(view: ItemView) -> str:
    esc = html.escape
    head = f"<strong>{esc(view.title)}</strong>"
    if view.subject:
        subject = esc(view.subject)
        head += "<br>" + (f'<a href="{esc(view.link)}">{subject}</a>' if view.link else subject)
    rows = "".join(
        f'<tr><th align="left" style="padding-right:12px">{esc(fact.label)}</th>'
        f"<td>{esc(fact.value)}</td></tr>"
        for fact in view.facts
    )
    quote = (f'<blockquote style="margin:6px 0;color:#555"><em>{esc(quoted(view.quote))}</em>'
             "</blockquote>" if view.quote else "")
    color = COLORS.get(view.kind, "#888888")
    return (f'<div style="border-left:4px solid {color};padding-left:10px;margin:14px 0">'
            f"<p>{head}</p><table>{rows}</table>{quote}</div>")


def email_bodies(message: AlertMessage) -> tuple[str, str]:
    """The plain text and HTML bodies of ``message``: summary first, then each item."""
    summary = f"replywatch: {message.summary()}"
    views = [item_view(item) for item in message.items[:MAX_EMAIL_ITEMS]]
    more = len(message.items) - len(views)
    text_lines = [summary, ""]
    for view in views:
        text_lines += [*_text_item(view), ""]
    if more:
        text_lines.append(more_line(more))
    parts = "".join(_html_item(view) for view in views)
    tail = f"<p>{more_line(more)}</p>" if more else ""
    page = (
        '<!DOCTYPE html><html><body style="font-family:sans-serif">'
        f"<h2>{html.escape(summary)}</h2>{parts}{tail}</body></html>"
    )
    return "\n".join(text_lines).rstrip() + "\n", page


def build_email(message: AlertMessage, *, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """The multipart (plain text + HTML) email of ``message``."""
    text, page = email_bodies(message)
    mail = EmailMessage()
    mail["Subject"] = f"[replywatch] {message.summary()}"
    mail["From"] = sender
    mail["To"] = ", ".join(recipients)
    mail["Date"] = format_datetime(message.created_at)
    mail["Message-ID"] = message_id(message.key, sender)
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(text)
    mail.add_alternative(page, subtype="html")
    return mail


def _reply(code: int, text: bytes | str, what: str, secrets: Sequence[str]) -> DeliveryError:
    answer = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    reason = clean(redact(f"{what}: {code} {answer}", secrets), _REASON_CHARS)
    return DeliveryError(reason, permanent=not 400 <= code < 500)


def smtp_failure(err: Exception, secrets: Sequence[str] = ()) -> DeliveryError:
    """Map an ``smtplib``/socket failure to a ``DeliveryError``: 4xx and network trouble
    are transient; 5xx, refused credentials and certificate failures are permanent."""
    if isinstance(err, smtplib.SMTPNotSupportedError):
        return DeliveryError(f"the server does not support that ({err})", permanent=True)
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in err.recipients.values()]
        first = next(iter(err.recipients.values()), (550, b""))
        failure = _reply(first[0], first[1], "recipients refused", secrets)
        return DeliveryError(failure.reason, permanent=not all(400 <= c < 500 for c in codes))
    if isinstance(err, smtplib.SMTPAuthenticationError):
        return _reply(err.smtp_code, err.smtp_error, "login refused", secrets)
    if isinstance(err, smtplib.SMTPSenderRefused):
        return _reply(err.smtp_code, err.smtp_error, "sender refused", secrets)
    if isinstance(err, smtplib.SMTPResponseException):
        return _reply(err.smtp_code, err.smtp_error, "server refused", secrets)
    if isinstance(err, ssl.SSLCertVerificationError):
        return DeliveryError("TLS certificate verification failed", permanent=True)
    if isinstance(err, ssl.SSLError):
        return DeliveryError(f"TLS failed ({type(err).__name__})", permanent=False)
    if isinstance(err, smtplib.SMTPServerDisconnected):
        return DeliveryError("the server closed the connection", permanent=False)
    if isinstance(err, TimeoutError):
        return DeliveryError("timed out", permanent=False)
    if isinstance(err, smtplib.SMTPException):
        return DeliveryError(f"SMTP failed ({type(err).__name__})", permanent=False)
    if isinstance(err, OSError):
        return DeliveryError(f"connection failed ({type(err).__name__})", permanent=False)
    return DeliveryError(f"email not built ({type(err).__name__})", permanent=True)


class EmailNotifier:
    """Sends each message as one email through the target's SMTP server.

    ``ssl_context`` replaces the system's default verifying context (a private CA).
    """

    kind: ClassVar[str] = "email"

    def __init__(
        self,
        target: AlertTargetConfig,
        session: aiohttp.ClientSession,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = SMTP_TIMEOUT,
    ) -> None:
        self._target = target
        self._ssl_context = ssl_context
        self._timeout = timeout

    def _secrets(self) -> tuple[str, ...]:
        password = self._target.password
        return (password.get_secret_value(),) if password and password.get_secret_value() else ()

    async def send(self, message: AlertMessage) -> None:
        """Send ``message`` as one email; raise ``DeliveryError`` if the server refuses it."""
        target = self._target
        if not (target.smtp_host and target.sender and target.recipients):
            raise DeliveryError("smtp_host, sender and recipients are required", permanent=True)
        try:
            mail = build_email(message, sender=target.sender, recipients=target.recipients)
        except (ValueError, TypeError) as err:
            raise DeliveryError(f"email not built ({type(err).__name__}: check sender and "
                                "recipients)", permanent=True) from None
        try:
            refused = await asyncio.to_thread(self._deliver, mail)
        except (smtplib.SMTPException, OSError) as err:
            raise smtp_failure(err, self._secrets()) from None
        if refused:
            # Some recipients have the mail already, so a retry would send it twice to
            # them; the refusal is kept as a permanent failure for a human to fix.
            address, (code, answer) = next(iter(sorted(refused.items())))
            failure = _reply(code, answer, f"refused {address}", self._secrets())
            delivered = len(target.recipients) - len(refused)
            raise DeliveryError(
                f"sent to {delivered} of {len(target.recipients)} recipients; {failure.reason}",
                permanent=True,
            )

    def _deliver(self, mail: EmailMessage) -> dict[str, tuple[int, bytes]]:
        target = self._target
        assert target.smtp_host is not None
        port = target.smtp_port or DEFAULT_PORTS[target.smtp_security]
        context = self._ssl_context or ssl.create_default_context()
        client: smtplib.SMTP
        if target.smtp_security == "tls":
            client = smtplib.SMTP_SSL(target.smtp_host, port, timeout=self._timeout,
                                      context=context)
        else:
            client = smtplib.SMTP(target.smtp_host, port, timeout=self._timeout)
        with client:
            client.ehlo()
            if target.smtp_security == "starttls":
                if not client.has_extn("starttls"):
                    raise DeliveryError("the server does not offer STARTTLS", permanent=True)
                client.starttls(context=context)
                client.ehlo()
            if target.username:
                if not client.has_extn("auth"):
                    raise DeliveryError("the server offers no login (AUTH)", permanent=True)
                password = target.password.get_secret_value() if target.password else ""
                client.login(target.username, password)
            return client.send_message(mail)
