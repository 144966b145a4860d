"""Retry-After, read one way for every client runwatch has (Loki, cloud sources, the events client)."""
from __future__ import annotations

import time
from email.utils import parsedate_to_datetime


def retry_after_seconds(value, *, cap: float | None = None, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks for: delta-seconds or an HTTP date; None when
    absent or unreadable. Never negative; at most `cap` when given."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        secs = float(text)
    except ValueError:
        try:
            secs = parsedate_to_datetime(text).timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if secs != secs:        # NaN
        return None
    secs = max(0.0, secs)
    return min(secs, cap) if cap is not None else secs
