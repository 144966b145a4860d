#!/usr/bin/env python3
"""Remote-write figures; prints them, asserts nothing.

usage: PYTHONPATH=exporter python3 bench/bench_remote_write.py [--runs N] [--writes K]

With N live runs (default 1,000; the same output per run as bench_core's render
figure), K writes are timed two ways, side by side, alternating:

  encode   collect -> WriteRequest (series.py) -> raw snappy: samples/s, and the
           ratio against rendering the same families as /metrics text (the
           reference: what a scrape costs runwatch).
  push     the above plus HTTP to a real Prometheus (`--web.enable-remote-write-receiver`;
           --receiver double: the recording receiver of tests/support/remote_write_double.py,
           which decodes in Python and is the slower side) until it answered:
           samples/s end to end.
  wire     bytes per sample on the wire (snappy protobuf), against the /metrics
           text gzip-compressed as Prometheus would fetch it.
"""
from __future__ import annotations

import argparse
import gzip
import os
import statistics
import subprocess
import sys
import time
import urllib.request

from runwatch.export.collector import RunwatchCollector
from runwatch.export.exposition import render
from runwatch.export.remote_write.config import EndpointConfig, RemoteWriteConfig
from runwatch.export.remote_write.sender import Endpoint, snappy_compressor
from runwatch.export.remote_write.series import SeriesWriter
from runwatch.model.runs import Ingest, Registry, RunSpec
from runwatch.parse.packs import Matcher, load_packs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOUBLE = os.path.join(ROOT, "tests", "support", "remote_write_double.py")


def registry_with(n: int) -> Registry:
    reg = Registry()
    matcher = Matcher(load_packs(["waa", "python", "tqdm"], []))
    for i in range(n):
        run = reg.add(RunSpec(id=f"run-{i:04d}", kind="job", source="file"))
        ing = Ingest(reg, run, matcher)
        ing.data(1, (f"Task 1/10: t{i}\nStep 1: CLICK\nStep 2: TYPE\nTask t{i}: SUCCESS\nTask 2/10: u{i}\n"
                     f"ERROR: x\n 45%|####5     | 450/1000 [00:12<00:15, 36.1it/s]\n").encode())
        ing.end(1)
    return reg


def receiver(kind: str, tmp: str) -> tuple[subprocess.Popen, str]:
    if kind == "double":
        p = subprocess.Popen([sys.executable, DOUBLE],
                             stdout=subprocess.PIPE, text=True)
        return p, p.stdout.readline().strip()
    from bench_core import free_port
    port = free_port()
    cfg = os.path.join(tmp, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global: {}\n")
    p = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp}/data",
                          f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver",
                          "--log.level=warn"], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2).close()
            break
        except OSError as e:
            if p.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("prometheus did not start") from e
            time.sleep(0.2)
    return p, f"http://127.0.0.1:{port}/api/v1/write"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--writes", type=int, default=20)
    ap.add_argument("--receiver", choices=("prometheus", "double"), default="prometheus",
                    help="a real Prometheus (Debian `prometheus`) or the recording test double")
    a = ap.parse_args()
    import tempfile
    tmp = tempfile.mkdtemp(prefix="bench-rw-")
    coll = RunwatchCollector(registry_with(a.runs))
    compress = snappy_compressor()
    writer = SeriesWriter({"job": "runwatch", "instance": "bench", "cluster": "c1"})
    writer.write(coll.collect())                         # first write: labels encoded once, as in service
    proc, url = receiver(a.receiver, tmp)
    cfg = RemoteWriteConfig(endpoints=[EndpointConfig(url=url)])
    ep = Endpoint(cfg.endpoints[0], cfg, None)
    ep.thread.start()
    t_enc, t_txt, t_push, wire, text_gz, samples = [], [], [], [], [], 0
    try:
        for _ in range(a.writes):
            t0 = time.perf_counter()
            body, n = writer.write(coll.collect())
            data = compress(body)
            t_enc.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            text = render(list(coll.collect()), openmetrics=False)
            t_txt.append(time.perf_counter() - t0)
            text_gz.append(len(gzip.compress(text, 1)) / n)
            wire.append(len(data) / n)
            samples = n
            t0 = time.perf_counter()
            before = ep.sent
            ep.enqueue(data, n)
            while ep.sent == before:
                time.sleep(0.0005)
            t_push.append(time.perf_counter() - t0 + t_enc[-1])
        assert not ep.dropped or not any(ep.dropped.values()), ep.dropped
    finally:
        ep.stop(time.monotonic() + 1)
        ep.join()
        proc.terminate()
        proc.wait()
    enc, txt, push = statistics.median(t_enc), statistics.median(t_txt), statistics.median(t_push)
    print(f"{a.runs} runs, {samples} samples per write, {a.writes} writes (medians)")
    print(f"encode   {enc * 1e3:7.1f} ms/write  {samples / enc:10,.0f} samples/s   "
          f"(/metrics text render {txt * 1e3:.1f} ms: ratio encode/render {enc / txt:.2f})")
    print(f"push     {push * 1e3:7.1f} ms/write  {samples / push:10,.0f} samples/s   "
          f"(encode + HTTP until {a.receiver} answered; ratio push/render {push / txt:.2f})")
    print(f"wire     {statistics.median(wire):7.2f} bytes/sample (snappy protobuf)   "
          f"/metrics text gzip -1: {statistics.median(text_gz):.2f} bytes/sample "
          f"(ratio {statistics.median(wire) / statistics.median(text_gz):.2f})")


if __name__ == "__main__":
    main()
