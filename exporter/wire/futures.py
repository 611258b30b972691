"""The one helper every protocol here shares: resolve a future someone may wait on."""

from __future__ import annotations

import asyncio


def wake(waiter: asyncio.Future[None] | None) -> None:
    """Resolve a future someone may be waiting on, if it is still pending."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
