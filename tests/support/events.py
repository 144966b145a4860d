"""Events built by hand for the reducer and its neighbours."""
from __future__ import annotations

from runwatch.events import Event


def ev(etype: str, ts: float = 0.0, **fields) -> Event:
    """An Event as a source would emit it, unvalidated (runwatch.events.make
    is the validating constructor, for tests of external input)."""
    return Event(etype, fields, ts)
