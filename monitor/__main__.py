"""Provides ``python -m monitor``, the same as the ``replywatch`` command."""

from __future__ import annotations

import sys

from monitor.cli import main

if __name__ == "__main__":
    sys.exit(main())
