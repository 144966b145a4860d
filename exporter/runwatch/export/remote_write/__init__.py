"""Prometheus remote-write 1.0 push: every series `/metrics` shows, to any store
that accepts remote-write (Prometheus, Mimir, Thanos Receive, VictoriaMetrics,
Grafana Cloud), with stale markers when a run's series end. docs/remote-write.md.

prompb.py   the WriteRequest protobuf encoding
series.py   metric families -> WriteRequest bodies, stale markers
spool.py    the disk spool of requests not yet accepted
sender.py   the Pusher (collect, compress) and its Endpoints (queue, retry, HTTP)
config.py   flags and the serve config's `remote_write:`
"""
from .config import RemoteWriteConfig, config_from_mapping, from_args
from .sender import Pusher, pusher_from

__all__ = ["Pusher", "RemoteWriteConfig", "config_from_mapping", "from_args", "pusher_from"]
