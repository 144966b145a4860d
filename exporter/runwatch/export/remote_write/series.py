"""Metric families -> WriteRequest bodies, with stale markers for series that end.

A `SeriesWriter` is fed the families `/metrics` renders (RunwatchCollector.collect())
once per push interval. Every sample becomes one series: the sample's name as
`__name__`, its labels, and the base labels (job, instance, external labels)
under them: a label the sample carries wins, as with Prometheus' external_labels.
Labels with an empty value are left out, as the remote-write spec asks (and as
a scrape stores them: `url=""` is no `url` label). A series' bytes up to its
value are encoded once and reused while it lives.
A series that was in the previous write and is not in this one (its run's grace
period ended and the registry forgot it) gets the stale marker at this write's
timestamp; `close()` ends every series the same way when runwatch exits.

Timestamps are milliseconds, strictly increasing from one write to the next.
Memory is bounded by the series of two consecutive writes.
"""
from __future__ import annotations

import time

from ..exposition import text_family
from .prompb import (encode_labels, encode_metadata, encode_sample, encode_series, pack_double, sample_tail,
                     series_head)

METADATA_EVERY = 60.0         # seconds between repeats of metadata (type, help), as Prometheus does


class SeriesWriter:
    def __init__(self, base_labels: dict[str, str], metadata_every: float = METADATA_EVERY):
        self.base = dict(base_labels)
        self.metadata_every = metadata_every
        self.live: dict[tuple, tuple] = {}      # series key -> its encoded labels (and head), as last written
        self.last_ms = 0
        self.meta_sent_at = None                # monotonic time of the last metadata
        self.meta_names: frozenset = frozenset()

    def _timestamp(self, now: float | None) -> int:
        ms = int((time.time() if now is None else now) * 1000)
        ms = max(ms, self.last_ms + 1)
        self.last_ms = ms
        return ms

    def write(self, families, now: float | None = None, *, final: bool = False) -> tuple[bytes, int]:
        """One WriteRequest (uncompressed) for the families' samples and the stale
        markers of series that ended; with final=True every series also ends, 1 ms
        after its last value. Returns (body, number of samples in it)."""
        ts = self._timestamp(now)
        tail = sample_tail(ts)
        tlen = len(tail)
        parts: list[bytes] = []
        append = parts.append
        metas: list[bytes] = []
        names = set()
        live: dict[tuple, tuple] = {}     # key -> (encoded labels, one-sample head, tail length it is for)
        old = self.live
        base = self.base
        pack = pack_double
        n = 0
        for fam in families:
            fname, mtype = text_family(fam)
            names.add(fname)
            metas.append(encode_metadata(fname, mtype, fam.documentation, fam.unit or ""))
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                ent = old.get(key) or live.get(key)
                if ent is None or ent[2] != tlen:
                    if ent is None:
                        labels = dict(base)
                        labels.update(s.labels)
                        labels["__name__"] = s.name
                        lab = encode_labels({k: v for k, v in labels.items() if v})   # empty means absent
                    else:
                        lab = ent[0]
                    ent = (lab, series_head(lab, tlen), tlen)
                live[key] = ent
                n += 1
                if final:
                    append(encode_series(ent[0], encode_sample(s.value, ts) + encode_sample(0.0, ts + 1, stale=True)))
                    n += 1
                else:
                    append(ent[1] + pack(s.value) + tail)
        for key, ent in old.items():
            if key not in live:
                parts.append(encode_series(ent[0], encode_sample(0.0, ts, stale=True)))
                n += 1
        if final:
            self.last_ms = ts + 1
            live = {}
        self.live = live
        mono = time.monotonic()
        names = frozenset(names)
        if (self.meta_sent_at is None or names != self.meta_names
                or mono - self.meta_sent_at >= self.metadata_every):
            parts += metas
            self.meta_sent_at, self.meta_names = mono, names
        return b"".join(parts), n
