"""runwatch: live Prometheus metrics for long-running ML and ops jobs."""

__version__ = "0.1.0"
