"""The wait an HTTP server asks for in `Retry-After`, shared by every client that honours it."""

from __future__ import annotations

import email.utils
import time
from typing import Protocol


class _Response(Protocol):
    headers: dict[str, str]


def retry_after_s(response: _Response, cap_s: float) -> float | None:
    """The wait `Retry-After` asks for (seconds or an HTTP date), within [0, cap_s]; None when absent or unreadable."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), cap_s)
