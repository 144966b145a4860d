"""Ship every line to Loki: in order, exactly once, through slow and absent Lokis.

The line path (`Shipper.ship`, the `Ingest.on_block` hook) only stamps a block
of lines with its timestamps and appends it to a bounded in-memory queue; one
background thread batches, encodes and pushes (`POST /loki/api/v1/push`, JSON,
gzip). When the memory queue is full (Loki slow or down), blocks go to a disk
spool in the data directory instead, bounded in bytes; the spool survives a
restart and is read back first, in order.

Order: a record is a block of lines with the timestamp of its first line;
line i of it has timestamp first+i ns. Timestamps are clamped per stream to be
strictly increasing, so Loki (which keeps one copy of identical
timestamp+line pairs) keeps every line and shows them in order. Once anything
is in the spool, new blocks go to the spool too until it is drained, so the
sequence memory -> spool is always oldest first. One push is in flight at a
time; a batch is retried until it is accepted or dropped, then the next.

Retries (jittered exponential backoff) happen only on 429 (Retry-After is
honoured), 5xx, connection errors and timeouts. Other 4xx drop the batch; every
dropped line is counted in runwatch_loki_entries_dropped_total{reason}.
A push that times out (a Loki slower than `timeout` for a batch that big) is
retried as batches of half its size, down to 16 KiB, with the same timestamps;
the size doubles back, up to `batch_max_bytes`, after a few pushes in a row
quick enough.

`close()` (SIGTERM, end of `runwatch run`) pushes what is pending for at most
`flush_timeout` seconds, then writes the rest to the front of the spool.

Stream labels (few, bounded): service_name="runwatch", kind, source, host.
Structured metadata per line: run_id, phase, level.

Modules: config (LokiConfig, auth, the `loki:` section, a Shipper from the
flags), levels (a line's level), spool (records and the disk spool), shipper
(batching, push, retry, self-metrics).
"""
from __future__ import annotations

from ...parse.redact import redactor_from
from .config import (LOKI_KEYS, LokiConfig, PushTarget, config_from_mapping, from_args, parse_auth, safe_url,
                     spool_dir_for)
from .levels import level_of
from .shipper import DROP_REASONS, Shipper
from .spool import Record, Spool, read_segment

__all__ = ["DROP_REASONS", "LOKI_KEYS", "LokiConfig", "PushTarget", "Record", "Shipper", "Spool",
           "config_from_mapping", "from_args", "level_of", "parse_auth", "read_segment", "redactor_from",
           "safe_url", "spool_dir_for"]
