"""Fast rendering of runwatch's metric families: Prometheus text 0.0.4 and OpenMetrics 1.0.

The output is byte for byte what prometheus_client's `generate_latest` writes
(tests/test_exposition.py compares them), but several times faster for the
families runwatch builds: prometheus_client 0.2x re-validates and re-escapes
every label *name* of every sample (its UTF-8 name support), while runwatch's
metric and label names are fixed or validated at config load, so only label
values need escaping. A family using anything else (exemplars, sample
timestamps, `_created` samples, native histograms) is rendered by
prometheus_client itself.
"""
from __future__ import annotations

import math
from math import copysign

# text format: the name suffix and type a family gets (prometheus_client's munging)
_TEXT = {"counter": ("_total", "counter"), "info": ("_info", "gauge"), "stateset": ("", "gauge"),
         "gaugehistogram": ("", "histogram"), "unknown": ("", "untyped")}
_SPECIAL_SUFFIXES = ("_created", "_gsum", "_gcount")


def text_family(m) -> tuple[str, str]:
    """The family name and type the text format announces (`# TYPE runwatch_errors_total counter`)."""
    suffix, mtype = _TEXT.get(m.type, ("", m.type))
    return m.name + suffix, mtype


def go_float(d) -> str:
    """A sample value as prometheus_client.utils.floatToGoString writes it (Go's formatting),
    here so that rendering needs no prometheus_client (`scan` never imports it)."""
    d = float(d)
    if d == math.inf:
        return "+Inf"
    if d == -math.inf:
        return "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:               # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def _esc(v: str) -> str:
    if "\\" in v or "\n" in v or '"' in v:
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return v


def _plain(m) -> bool:
    """True if every sample is a plain name{labels} value line."""
    special = tuple(m.name + s for s in _SPECIAL_SUFFIXES)
    for s in m.samples:
        if s.timestamp is not None or s.exemplar or getattr(s, "native_histogram", None) or s.name in special:
            return False
    return True


class _One:
    def __init__(self, m):
        self.m = m

    def collect(self):
        return [self.m]


def render(families, openmetrics: bool) -> bytes:
    out: list[str] = []
    append = out.append
    for m in families:
        if not _plain(m):                  # rare (exemplars, timestamps ...): prometheus_client's own
            from prometheus_client import exposition as _text_lib
            from prometheus_client.openmetrics import exposition as _om_lib
            if openmetrics:
                append(_om_lib.generate_latest(_One(m)).decode("utf-8")[:-len("# EOF\n")])
            else:
                append(_text_lib.generate_latest(_One(m)).decode("utf-8"))
            continue
        name = m.name
        if openmetrics:
            append(f"# HELP {name} {_esc(m.documentation)}\n# TYPE {name} {m.type}\n")
            if m.unit:
                append(f"# UNIT {name} {m.unit}\n")
        else:
            fname, mtype = text_family(m)
            doc = m.documentation.replace("\\", "\\\\").replace("\n", "\\n")
            append(f"# HELP {fname} {doc}\n# TYPE {fname} {mtype}\n")
        for s in m.samples:
            labels, v = s.labels, s.value
            if v == 1:                     # most samples: stateset members, idle counters
                value = "1.0"
            elif v == 0:
                value = "0.0" if copysign(1.0, v) > 0 else "-0.0"
            else:
                value = go_float(v)
            if len(labels) == 1:
                (k, lv), = labels.items()
                append(f'{s.name}{{{k}="{_esc(lv)}"}} {value}\n')
            elif labels:
                body = ",".join([f'{k}="{_esc(lv)}"' for k, lv in sorted(labels.items())])
                append(f"{s.name}{{{body}}} {value}\n")
            else:
                append(f"{s.name} {value}\n")
    if openmetrics:
        append("# EOF\n")
    return "".join(out).encode("utf-8")
