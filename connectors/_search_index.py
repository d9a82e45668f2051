"""Provides the round rule of connectors that list changes through a search index.

Help Scout's conversation list and Intercom's conversation search are indexes that
trail writes by a few seconds and filter on whole seconds. A connector reads them in
rounds: each round asks for what changed since ``since``, page by page, and the next
round starts ``lag`` before the server time at which this one started, re-reading that
overlap. The watermark moves only after a round of a single page, to its start minus
``lag``: one page is one snapshot of the index, and the lag covers what the index had
not shown yet. In a round of several pages a conversation changed meanwhile can move
behind the pages still to read and only be seen by the next round, so such a round
leaves the watermark where it was.
"""

from __future__ import annotations

import math


def finish_round(
    since: int, started: int | None, pages: int, watermark: int | None, lag: float
) -> tuple[int, int | None]:
    """The next round's ``since`` and the watermark after a round (all epoch seconds).

    ``started`` is the server time of the round's first page (None: ``since``) and
    ``pages`` how many pages it read. Neither value ever moves backwards.
    """
    horizon = (started if started is not None else since) - math.ceil(lag)
    if pages <= 1:  # one page is one snapshot: nothing moved while we paged
        watermark = horizon if watermark is None else max(watermark, horizon)
    return max(since, horizon), watermark
