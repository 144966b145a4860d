"""The remote-write 1.0 WriteRequest, hand-encoded (no `protobuf` dependency).

The schema is prometheus/prompb's remote.proto and types.proto, stable since
remote-write 1.0:

    WriteRequest   { repeated TimeSeries timeseries = 1; repeated MetricMetadata metadata = 3; }
    TimeSeries     { repeated Label labels = 1; repeated Sample samples = 2; }
    Label          { string name = 1; string value = 2; }
    Sample         { double value = 1; int64 timestamp = 2; }   // timestamp in ms
    MetricMetadata { MetricType type = 1; string metric_family_name = 2; string help = 4; string unit = 5; }

Labels are written sorted by name with `__name__` among them, as receivers
require. STALE_NAN is the bit pattern Prometheus reads as "this series ended".
"""
from __future__ import annotations

import struct

# MetricMetadata.MetricType
METRIC_TYPES = {"unknown": 0, "counter": 1, "gauge": 2, "histogram": 3, "gaugehistogram": 4, "summary": 5,
                "info": 6, "stateset": 7}
STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
_DOUBLE = struct.Struct("<d")
_STALE_BYTES = struct.pack("<Q", STALE_NAN_BITS)


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64                      # int64 two's complement, as protobuf writes it
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(tag << 3 | 2) + _varint(len(payload)) + payload


def encode_label(name: str, value: str) -> bytes:
    # "replace": a lone surrogate (JSON allows them in events) must not fail every later push
    n, v = name.encode("utf-8", "replace"), value.encode("utf-8", "replace")
    return _field(1, b"\x0a" + _varint(len(n)) + n + b"\x12" + _varint(len(v)) + v)


def encode_labels(labels: dict) -> bytes:
    """The TimeSeries.labels part of a series, sorted by name: computed once per series and reused."""
    return b"".join(encode_label(k, labels[k]) for k in sorted(labels))


def encode_sample(value: float, timestamp_ms: int, stale: bool = False) -> bytes:
    body = b"\x09" + (_STALE_BYTES if stale else _DOUBLE.pack(value))
    if timestamp_ms:
        body += b"\x10" + _varint(timestamp_ms)
    return _field(2, body)


def encode_series(labels_part: bytes, samples_part: bytes) -> bytes:
    return _field(1, labels_part + samples_part)


def sample_tail(timestamp_ms: int) -> bytes:
    """What follows the 8 value bytes of every sample at this timestamp."""
    return b"\x10" + _varint(timestamp_ms)


def series_head(labels_part: bytes, tail_len: int) -> bytes:
    """A one-sample series up to its 8 value bytes: `head + pack('<d', v) + tail` is
    encode_series(labels_part, encode_sample(v, ts)) for any ts whose tail has tail_len
    bytes. Computed once per series; a write then costs a concatenation per sample."""
    sample_len = 1 + 8 + tail_len
    inner = len(labels_part) + 1 + len(_varint(sample_len)) + sample_len
    return b"\x0a" + _varint(inner) + labels_part + b"\x12" + _varint(sample_len) + b"\x09"


def pack_double(value: float) -> bytes:
    return _DOUBLE.pack(value)


def encode_metadata(family: str, mtype: str, help_text: str, unit: str = "") -> bytes:
    body = b"\x08" + _varint(METRIC_TYPES.get(mtype, 0))
    name = family.encode("utf-8")
    body += b"\x12" + _varint(len(name)) + name
    if help_text:
        h = help_text.encode("utf-8")
        body += b"\x22" + _varint(len(h)) + h
    if unit:
        u = unit.encode("utf-8")
        body += b"\x2a" + _varint(len(u)) + u
    return _field(3, body)
