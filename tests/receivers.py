"""Provides local receivers for alert tests: one real webhook app per chat kind, and SMTP.

A ``Receiver`` is a real aiohttp application on 127.0.0.1 that answers like the
platform it stands for (Slack's ``200 ok``, Teams' ``202``, Discord's ``204``...),
records every request with its raw body, and can be scripted::

    async with receive("slack") as slack:
        slack.script(Reply(429, retry_after=2), Reply(500), Reply.text(410, "channel_is_archived"))
        target = target_for(slack)          # an AlertTargetConfig pointing at it
        ...
        assert slack.payloads() == [...]

Scripted replies are used once each, in order; ``Reply(reset=True)`` drops the
connection before answering and ``Reply(delay=...)`` answers late. ``down`` answers
every request while set (an outage); ``min_interval`` answers 429 with Retry-After to
a request that comes sooner than that after the previous accepted one, as Slack does
past about one message per second. ``unused_url`` gives a URL where nothing listens.

``smtp_receiver`` serves aiosmtpd on loopback, in clear, with STARTTLS or with
implicit TLS, optionally requiring a login, and records every mail; ``data_replies``
scripts answers to DATA (``"451 4.3.0 try again later"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import warnings
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, Literal

from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from connectors.fakes._base import serve
from monitor.config import AlertTargetConfig

ChatKind = Literal["slack", "teams", "discord", "mattermost", "google_chat", "webhook"]
KINDS: tuple[ChatKind, ...] = ("slack", "teams", "discord", "mattermost", "google_chat", "webhook")

SECRET = "T0KEN-s3cr3t-9f8e7d6c5b4a3210"
"""The token in every receiver's URL: it must never appear in an error or a log."""
SIGNING_SECRET = "whsec-0123456789abcdef-signing"
"""The HMAC key ``target_for`` gives a generic webhook target."""

PATHS: Mapping[ChatKind, str] = {
    "slack": f"/services/T00000000/B00000000/{SECRET}",
    "teams": "/workflows/0123abcd4567/triggers/manual/paths/invoke",
    "discord": f"/api/webhooks/123456789012345678/{SECRET}",
    "mattermost": f"/hooks/{SECRET}",
    "google_chat": "/v1/spaces/AAAA1234/messages",
    "webhook": f"/replywatch/{SECRET}",
}
QUERIES: Mapping[ChatKind, str] = {
    "teams": f"api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SECRET}",
    "google_chat": f"key=AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI&token={SECRET}",
}


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer: a status, a body, headers; or a delay, or a dropped connection."""

    status: int = 200
    body: str = ""
    content_type: str = "text/plain"
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_after: float | str | None = None
    delay: float = 0.0
    reset: bool = False

    @classmethod
    def text(cls, status: int, body: str, **options: Any) -> Reply:
        """A plain-text answer, as Slack and Mattermost give (``invalid_token``)."""
        return cls(status, body, "text/plain", **options)

    @classmethod
    def json(cls, status: int, data: Any, **options: Any) -> Reply:
        """A JSON answer, as Discord, Teams and Google Chat give."""
        return cls(status, json.dumps(data), "application/json", **options)


OK_REPLIES: Mapping[ChatKind, Reply] = {
    "slack": Reply.text(200, "ok"),
    "teams": Reply(202),
    "discord": Reply(204),
    "mattermost": Reply.text(200, "ok"),
    "google_chat": Reply.json(200, {
        "name": "spaces/AAAA1234/messages/aBc.aBc",
        "sender": {"name": "users/114022495153014004089", "type": "BOT"},
        "space": {"name": "spaces/AAAA1234"},
    }),
    "webhook": Reply(204),
}
"""What each platform answers to a message it accepted."""


@dataclass(frozen=True, slots=True)
class Received:
    """One request a receiver got, with its raw body and when (event loop time)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    at: float
    raw_path: str = ""
    """The path and query exactly as sent, before any decoding."""

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """A request header, by case-insensitive name."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


class Receiver:
    """A local stand-in for one platform's webhook endpoint."""

    def __init__(self, kind: ChatKind, *, ok: Reply | None = None) -> None:
        self.kind: ChatKind = kind
        self.ok = ok or OK_REPLIES[kind]
        self.replies: deque[Reply] = deque()
        self.requests: list[Received] = []
        self.down: Reply | None = None
        self.min_interval: float | None = None
        self.base = ""
        self._last_accepted: float | None = None

    @property
    def url(self) -> str:
        """The secret webhook URL of this receiver (with its token)."""
        query = QUERIES.get(self.kind)
        return f"{self.base}{PATHS[self.kind]}" + (f"?{query}" if query else "")

    def script(self, *replies: Reply) -> None:
        """Queue answers for the next requests, one each, before answering ``ok`` again."""
        self.replies.extend(replies)

    def payloads(self) -> list[Any]:
        """The JSON body of every request received, in order."""
        return [request.json() for request in self.requests]

    def app(self) -> web.Application:
        """The aiohttp application that records and answers."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        now = asyncio.get_running_loop().time()
        self.requests.append(Received(
            request.method, request.path, dict(request.query), dict(request.headers),
            await request.read(), now, request.raw_path,
        ))
        if request.method != "POST" or request.path != PATHS[self.kind]:
            return web.Response(status=404, text="no_service")
        if self.down is not None:
            reply = self.down
        elif self.replies:
            reply = self.replies.popleft()
        elif self.min_interval is not None and self._last_accepted is not None and (
            now - self._last_accepted < self.min_interval
        ):
            wait = self.min_interval - (now - self._last_accepted)
            reply = Reply.text(429, "rate_limited", retry_after=f"{max(1, round(wait))}")
        else:
            reply = self.ok
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.reset:  # the connection drops before any answer: did it arrive? unknown
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)
        if 200 <= reply.status < 300:
            self._last_accepted = now
        headers = dict(reply.headers)
        if reply.retry_after is not None:
            headers["Retry-After"] = str(reply.retry_after)
        if reply.status in (202, 204) and not reply.body:
            return web.Response(status=reply.status, headers=headers)
        return web.Response(status=reply.status, text=reply.body,
                            content_type=reply.content_type, headers=headers)


@contextlib.asynccontextmanager
async def receive(kind: ChatKind, *, ok: Reply | None = None) -> AsyncIterator[Receiver]:
    """Serve a receiver for ``kind`` on loopback while the block runs."""
    receiver = Receiver(kind, ok=ok)
    async with serve(receiver.app()) as base:
        receiver.base = base
        yield receiver


def unused_url(kind: ChatKind = "slack") -> str:
    """A webhook URL on a loopback port where nothing listens: connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    query = QUERIES.get(kind)
    return f"http://127.0.0.1:{port}{PATHS[kind]}" + (f"?{query}" if query else "")


def target_for(receiver: Receiver | str, name: str = "chat", *, kind: ChatKind | None = None,
               **settings: Any) -> AlertTargetConfig:
    """An ``[[alerts]]`` target pointing at ``receiver`` (or at a URL, given ``kind``)."""
    if isinstance(receiver, Receiver):
        url, kind = receiver.url, receiver.kind
    else:
        url = receiver
    assert kind is not None, "give kind= with a plain URL"
    data: dict[str, Any] = {"name": name, "kind": kind, "url": url}
    if kind == "webhook":
        data["secret"] = SIGNING_SECRET
    data.update(settings)
    return AlertTargetConfig.model_validate(data)


# SMTP ------------------------------------------------------------------------------------

SmtpSecurity = Literal["none", "starttls", "tls"]


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One mail an SMTP receiver accepted, with how it came (TLS, login)."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    encrypted: bool
    login: str | None

    def message(self) -> EmailMessage:
        """The mail parsed with the modern email policy."""
        return message_from_bytes(self.data, policy=policy.default)


class SmtpReceiver:
    """An aiosmtpd server on loopback that records mails and can refuse them."""

    def __init__(self, *, login: tuple[str, str] | None) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.mails: list[ReceivedMail] = []
        self.data_replies: deque[str] = deque()
        self.refuse: dict[str, str] = {}
        self.logins: list[str] = []
        self._login = login

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        """aiosmtpd's authenticator: accept exactly the configured user and password."""
        if isinstance(auth_data, LoginPassword) and self._login is not None:
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if (user, password) == self._login:
                self.logins.append(user)
                return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        """Accept a recipient unless ``refuse`` names it (with the reply to give)."""
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Record the mail, or give the next scripted answer instead."""
        if self.data_replies:
            return self.data_replies.popleft()
        transport = server.transport
        encrypted = transport is not None and transport.get_extra_info("ssl_object") is not None
        content = envelope.original_content or envelope.content or b""
        self.mails.append(ReceivedMail(
            sender=envelope.mail_from or "",
            recipients=tuple(envelope.rcpt_tos),
            data=content if isinstance(content, bytes) else content.encode(),
            encrypted=encrypted,
            login=session.auth_data if isinstance(session.auth_data, str) else None,
        ))
        return "250 Message accepted for delivery"


def server_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server-side TLS context from a certificate and its key (PEM files)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


@contextlib.asynccontextmanager
async def smtp_receiver(
    *,
    security: SmtpSecurity = "none",
    tls: ssl.SSLContext | None = None,
    login: tuple[str, str] | None = None,
) -> AsyncIterator[SmtpReceiver]:
    """Serve SMTP on loopback: in clear, offering STARTTLS (required), or implicit TLS.

    ``tls`` is the server's context (``server_tls_context``), needed unless ``none``.
    With ``login`` a client must authenticate (over TLS unless ``security`` is none).
    """
    receiver = SmtpReceiver(login=login)
    loop = asyncio.get_running_loop()
    if security != "none" and tls is None:
        raise ValueError(f"SMTP security {security!r} needs a server TLS context")

    def protocol() -> SMTP:
        with warnings.catch_warnings():
            # Login without STARTTLS is what implicit TLS (and the "none" tests) mean here.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return _smtp()

    def _smtp() -> SMTP:
        return SMTP(
            receiver,
            hostname="replywatch-test",
            tls_context=tls if security == "starttls" else None,
            require_starttls=security == "starttls",
            auth_required=login is not None,
            # aiosmtpd only knows of TLS it started itself (STARTTLS); implicit TLS is
            # encrypted from the first byte, so it must not ask for STARTTLS again.
            auth_require_tls=security == "starttls",
            authenticator=receiver.authenticate,
            loop=loop,
        )

    server = await loop.create_server(
        protocol, receiver.host, 0, ssl=tls if security == "tls" else None,
    )
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()
        await server.wait_closed()
