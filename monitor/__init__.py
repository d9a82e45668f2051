"""replywatch: how fast a support team answers people, against its SLAs."""

__version__ = "0.1.0"
