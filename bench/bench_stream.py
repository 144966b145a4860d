"""Memory of the status page's event stream: 10 pages on 20 chatty runs.

Starts `runwatch serve --events` twice, side by side in time: once from a reference commit
(its exporter/ taken with `git archive`; by default the last commit whose stream sent every
run on every push) and once from this checkout. For each, a poster sends log lines and a
progress event for 20 runs (one POST a tenth of a second, 10 lines of 4000 characters a run each), 10 clients
read /api/stream (raw sockets, as fast as they can), and the server's resident memory
(VmRSS, VmHWM from /proc) is sampled. Prints, per side, the RSS before the clients came,
the peak and the end, the bytes the clients received, and the ratios, current over
reference.

    .venv/bin/python bench/bench_stream.py                 # --seconds 30 --reference 879b736
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
REFERENCE = "879b736"      # the last commit whose /api/stream sent every run (and 50 lines each) on every push
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    vals = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                vals[k] = int(v.split()[0])
    return vals["VmRSS"], vals["VmHWM"]


def post(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


class Client(threading.Thread):
    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port, self.bytes, self.pushes = port, 0, 0
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(b"GET /api/stream HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")

    def run(self):
        with contextlib.suppress(OSError):
            while True:
                b = self.sock.recv(1 << 16)
                if not b:
                    return
                self.bytes += len(b)
                self.pushes += b.count(b"\ndata: ")

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def one(pythonpath: str, seconds: float, runs: int, clients: int, lines: int, width: int) -> dict:
    port = free_port()
    data = tempfile.mkdtemp(prefix="runwatch-bench-stream-")
    env = dict(os.environ, PYTHONPATH=pythonpath, RUNWATCH_TOKEN=TOKEN, RUNWATCH_DATA_DIR=data)
    cfg = pathlib.Path(data) / "empty.yaml"
    (pathlib.Path(data) / "idle.log").write_text("")
    cfg.write_text(f"runs:\n  - {{id: idle, file: {pathlib.Path(data) / 'idle.log'}}}\n")
    p = subprocess.Popen([sys.executable, "-m", "runwatch", "serve", "-c", str(cfg), "--events",
                          "--listen", f"127.0.0.1:{port}"], env=env,
                         stdout=subprocess.DEVNULL, stderr=open(pathlib.Path(data) / "stderr", "wb"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or p.poll() is not None:
                    raise SystemExit(f"runwatch did not start: {(pathlib.Path(data) / 'stderr').read_text()}") from None
                time.sleep(0.1)
        stop = threading.Event()
        sent = [0, 0]

        def poster():
            n = 0
            while not stop.is_set():
                items = []
                for r in range(runs):
                    text = "\n".join(f"run {r} step {n * lines + i} loss={1.0 / (1 + n + i):.6f} " + "x" * width
                                     for i in range(lines))
                    items.append({"type": "log", "run_id": f"chatty-{r:02d}", "line": text})
                    items.append({"type": "progress_update", "run_id": f"chatty-{r:02d}", "progress": n % 100})
                code = post(url + "/api/events", "\n".join(json.dumps(x) for x in items).encode())
                sent[0 if code == 200 else 1] += 1
                n += 1
                stop.wait(0.1)

        pt = threading.Thread(target=poster, daemon=True)
        pt.start()
        time.sleep(2)                      # the runs exist and are chatty before the pages come
        before = rss(p.pid)[0]
        cs = [Client(port) for _ in range(clients)]
        for c in cs:
            c.start()
        t0 = time.monotonic()
        peak = before
        while time.monotonic() - t0 < seconds:
            peak = max(peak, rss(p.pid)[0])
            time.sleep(0.25)
        end, hwm = rss(p.pid)
        stop.set()
        pt.join(10)
        for c in cs:
            c.close()
        return {"before": before, "peak": max(peak, end), "end": end, "hwm": hwm, "bytes": sum(c.bytes for c in cs),
                "pushes": sum(c.pushes for c in cs), "posts_ok": sent[0], "posts_refused": sent[1]}
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
        shutil.rmtree(data, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", default=REFERENCE, help=f"git commit to compare with (default {REFERENCE})")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--lines", type=int, default=10, help="lines per run per post (10 posts a second)")
    ap.add_argument("--width", type=int, default=4000, help="characters per line (the events API keeps 16384)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="runwatch-bench-ref-") as ref:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", a.reference, "exporter"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", ref], input=archive, check=True)
        results = {}
        for name, path in (("reference " + a.reference, os.path.join(ref, "exporter")),
                           ("this checkout", str(ROOT / "exporter"))):
            r = results[name] = one(path, a.seconds, a.runs, a.clients, a.lines, a.width)
            print(f"{name:>22}: RSS before clients {r['before'] / 1024:7.1f} MiB, peak {r['peak'] / 1024:7.1f} MiB, "
                  f"end {r['end'] / 1024:7.1f} MiB (high-water {r['hwm'] / 1024:.1f}); clients got "
                  f"{r['bytes'] / 1e6:8.1f} MB in {r['pushes']} pushes; posts {r['posts_ok']} ok, "
                  f"{r['posts_refused']} refused", flush=True)
    old, new = results.values()
    growth = max(1, new["peak"] - new["before"]) / max(1, old["peak"] - old["before"])
    print(f"ratio (this checkout / reference): peak RSS {new['peak'] / old['peak']:.2f}, "
          f"growth over the RSS before the clients {growth:.3f}, "
          f"bytes sent {new['bytes'] / max(1, old['bytes']):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
