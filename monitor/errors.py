"""Provides the one exception tree of replywatch.

::

    ReplywatchError                 anything replywatch raises on purpose
    ├── ConfigError                 bad config; knows the key path (``sources[2].token``)
    ├── InputError                  an unreadable or malformed input file (explain --events)
    ├── ConnectorError              a source's API did not give us what we asked for
    │   ├── TransientError          worth retrying soon (5xx, timeout, connection reset)
    │   │   └── RateLimited         the API asked us to wait ``retry_after`` seconds
    │   ├── FatalError              retrying will not help until a human acts
    │   │   ├── AuthError           401/403: bad or revoked credentials
    │   │   └── NotFound            404: what was asked for is gone (deleted meanwhile)
    │   └── ParseError              a page that is not what the API documents
    └── StorageError                the store is unreachable, locked or behind
        └── LeaseLost               a worker wrote for a source whose lease it no longer holds

Messages name the thing and the place and never carry a secret: library errors are
translated at the edge with ``raise ... from err`` and their text is scrubbed of URLs'
query strings and credentials (see ``connectors._http``).
"""

from __future__ import annotations


class ReplywatchError(Exception):
    """Base of every error replywatch raises on purpose."""


class ConfigError(ReplywatchError):
    """The configuration is invalid; ``path`` is the key path (``sources[2].token``)."""

    def __init__(self, message: str, *, path: str = "", file: str = "") -> None:
        self.path = path
        self.file = file
        self.problem = message
        where = ": ".join(part for part in (file, path) if part)
        super().__init__(f"{where}: {message}" if where else message)


class InputError(ReplywatchError):
    """An input file given on the command line cannot be read or parsed."""


class ConnectorError(ReplywatchError):
    """A source's API call failed; the message never contains a secret."""


class TransientError(ConnectorError):
    """A failure worth retrying soon: a 5xx, a timeout, a reset connection."""


class RateLimited(TransientError):
    """The API (or our own limiter for it) asks us to wait ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = max(0.0, retry_after)
        super().__init__(message)


class FatalError(ConnectorError):
    """A failure that retrying will not fix until a human acts (bad settings, 404)."""


class AuthError(FatalError):
    """The API refused our credentials (401/403)."""


class NotFound(FatalError):
    """The API answered 404: what was asked for does not exist (or was deleted meanwhile)."""


class ParseError(ConnectorError):
    """A page that is not what the API documents; nothing of it may be stored."""


class StorageError(ReplywatchError):
    """The store is unreachable, locked, or at a schema this version cannot use."""


class LeaseLost(StorageError):
    """A write for a source was refused: this worker no longer holds the source's lease.

    The database checks the lease (owner and epoch, unexpired, owner's session alive)
    in the write's own transaction, so nothing of the refused write is stored.
    """

    def __init__(self, message: str, *, source: str) -> None:
        self.source = source
        super().__init__(message)
