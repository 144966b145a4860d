"""The metric families the collector builds, without importing prometheus_client.

Importing prometheus_client takes about 0.1 s (its package imports an HTTP server, a WSGI
server, urllib and ssl), which `runwatch scan` paid at every start only to fill in these few
data holders. These classes take the same arguments and make the same samples as
prometheus_client's CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily and
StateSetMetricFamily (tests/test_exposition.py compares them), and have the attributes
prometheus_client's CollectorRegistry, generate_latest and OpenMetrics exposition read
(name, documentation, unit, type, samples of name, labels, value, timestamp, exemplar,
native_histogram), so `serve` hands them to prometheus_client as before.
"""
from __future__ import annotations

from typing import NamedTuple


class Sample(NamedTuple):
    """prometheus_client.samples.Sample's fields, in its order."""
    name: str
    labels: dict
    value: float
    timestamp: float | None = None
    exemplar: object = None
    native_histogram: object = None


class Collector:
    """What prometheus_client.registry.Collector asks of a collector: collect(); describe()
    for a registry that auto-describes."""

    def collect(self):              # pragma: no cover - every collector defines it
        raise NotImplementedError

    def describe(self):
        return []


def _labels(names, values) -> dict:
    return dict(zip(names, values, strict=False))      # as prometheus_client: extra values are dropped


class Metric:
    """A metric family: prometheus_client.metrics_core.Metric's attributes."""

    def __init__(self, name: str, documentation: str, typ: str, unit: str = ""):
        if unit and not name.endswith("_" + unit):
            name += "_" + unit
        if not name:
            raise ValueError("metric name cannot be empty")
        self.name, self.documentation, self.unit, self.type = name, documentation, unit, typ
        self.samples: list[Sample] = []

    def add_sample(self, name: str, labels: dict, value: float, timestamp=None, exemplar=None,
                   native_histogram=None) -> None:
        self.samples.append(Sample(name, labels, value, timestamp, exemplar, native_histogram))

    def __eq__(self, other: object) -> bool:
        return all(getattr(self, k) == getattr(other, k, None)
                   for k in ("name", "documentation", "type", "unit", "samples"))

    __hash__ = None         # mutable, compared by value, as prometheus_client's

    def __repr__(self) -> str:
        return f"Metric({self.name}, {self.documentation}, {self.type}, {self.unit}, {self.samples})"


class _Family(Metric):
    TYPE = ""

    def __init__(self, name: str, documentation: str, value=None, labels=None, unit: str = ""):
        Metric.__init__(self, name, documentation, self.TYPE, unit)
        if labels is not None and value is not None:
            raise ValueError("Can only specify at most one of value and labels.")
        self._labelnames = tuple(labels or ())
        if value is not None:
            self.add_metric([], value)


class CounterMetricFamily(Metric):

    def __init__(self, name: str, documentation: str, value=None, labels=None, created=None, unit: str = "",
                 exemplar=None):
        Metric.__init__(self, name[:-6] if name.endswith("_total") else name, documentation, "counter", unit)
        if labels is not None and value is not None:
            raise ValueError("Can only specify at most one of value and labels.")
        self._labelnames = tuple(labels or ())
        if value is not None:
            self.add_metric([], value, created, exemplar=exemplar)

    def add_metric(self, labels, value: float, created=None, timestamp=None, exemplar=None) -> None:
        self.samples.append(Sample(self.name + "_total", _labels(self._labelnames, labels), value, timestamp,
                                   exemplar))
        if created is not None:
            self.samples.append(Sample(self.name + "_created", _labels(self._labelnames, labels), created,
                                       timestamp))


class GaugeMetricFamily(_Family):
    TYPE = "gauge"

    def add_metric(self, labels, value: float, timestamp=None) -> None:
        self.samples.append(Sample(self.name, _labels(self._labelnames, labels), value, timestamp))


class InfoMetricFamily(_Family):
    TYPE = "info"

    def __init__(self, name: str, documentation: str, value=None, labels=None):
        super().__init__(name, documentation, value, labels)

    def add_metric(self, labels, value: dict, timestamp=None) -> None:
        self.samples.append(Sample(self.name + "_info", dict(_labels(self._labelnames, labels), **value), 1,
                                   timestamp))


class StateSetMetricFamily(_Family):
    TYPE = "stateset"

    def __init__(self, name: str, documentation: str, value=None, labels=None):
        super().__init__(name, documentation, value, labels)

    def add_metric(self, labels, value: dict, timestamp=None) -> None:
        labels = tuple(labels)
        names = self._labelnames + (self.name,)
        for state, enabled in sorted(value.items()):
            self.samples.append(Sample(self.name, _labels(names, labels + (state,)), 1 if enabled else 0,
                                       timestamp))
