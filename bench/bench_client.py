#!/usr/bin/env python3
"""What runwatch.client costs the job that calls it; prints figures, asserts nothing.

usage: PYTHONPATH=exporter python3 bench/bench_client.py

With nothing listening (the worst case for a client that must never slow a
job): the time of one RunwatchClient.event() call and of one log record
through RunwatchLogHandler, in the calling thread.
"""
import logging
import socket
import time

from runwatch.client import RunwatchClient, RunwatchLogHandler


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"      # closed again: nothing listens


def main() -> None:
    c = RunwatchClient(dead_url(), "token", "bench", flush_interval=0.01, max_queue=1000)
    n = 200_000
    t0 = time.perf_counter()
    for i in range(n):
        c.event("step", action="click", index=i)
    per_call = (time.perf_counter() - t0) / n
    log = logging.getLogger("bench_client")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(RunwatchLogHandler(c))
    m = 20_000
    t0 = time.perf_counter()
    for i in range(m):
        log.info("line %d", i)
    per_record = (time.perf_counter() - t0) / m
    t0 = time.perf_counter()
    c.close(timeout=0.5)
    print(f"client.event() with runwatch down: {per_call * 1e6:.2f} us per call ({n:,} calls)")
    print(f"log record through RunwatchLogHandler, runwatch down: {per_record * 1e6:.2f} us ({m:,} records)")
    print(f"close(timeout=0.5): {time.perf_counter() - t0:.2f} s; dropped {dict(c.dropped)}")


if __name__ == "__main__":
    main()
