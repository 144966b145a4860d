"""Remote-write push against a local receiver that decodes the real snappy+protobuf body
(tests/support/remote_write_double.py): headers, labels, metadata, stale markers, 4xx/5xx/429
handling, and an outage of the receiver with a runwatch restart in the middle of it."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import requests

from support.ports import free_port
from support.cli import run_cli
from support.procs import runwatch_cmd
from support.prom_text import sample
from support.waits import wait_for
from support.remote_write import JOB, MOVING, parse_metrics, run_series, wait_writes_while_down
from support.remote_write_double import RemoteWriteServer, decode_write_request

from runwatch.export.remote_write.prompb import STALE_NAN_BITS
from runwatch.export.remote_write.series import SeriesWriter


@pytest.fixture
def receiver():
    srv = RemoteWriteServer()
    yield srv
    srv.stop()


def _start_run(tmp_path, receiver, *extra, env=None, run_id="rw-1"):
    gate = tmp_path / "gate"
    port = free_port()
    p = subprocess.Popen(runwatch_cmd("run", "--listen", f"127.0.0.1:{port}", "--grace", "0", "--run-id", run_id,
                                      "--pack", "waa", "--pack", "python", "--data-dir", str(tmp_path / "data"),
                                      "--remote-write", receiver.url, "--remote-write-interval", "0.2", *extra,
                                      "--", sys.executable, "-c", JOB, str(gate)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    return p, gate, f"http://127.0.0.1:{port}/metrics"


@pytest.mark.stack()   # waits out real client timeouts and retries
def test_series_headers_metadata_and_stale_markers(tmp_path, receiver):
    env = dict(os.environ, RUNWATCH_REMOTE_WRITE_AUTH="Bearer s3cret-token")     # the env twin of the flag
    p, gate, url = _start_run(tmp_path, receiver, "--remote-write-tenant", "team-a",
                              "--external-label", "cluster=gpu-a", "--external-label", "region=westeurope", env=env)
    try:
        wait_for(lambda: receiver.latest("runwatch_tasks_started_total", run_id="rw-1") == 2, 30,
                 what="the running job's series pushed")
        # what /metrics shows now, and a push that certainly came after this scrape
        scraped = run_series(parse_metrics(requests.get(url, timeout=5).text), "rw-1")
        n = receiver.accepted
        wait_for(lambda: receiver.accepted >= n + 2, 30, what="two more pushes")
        assert p.poll() is None, "the job must still be running"
    finally:
        gate.touch()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err.decode()

    host = f"{socket.gethostname()}:{url.split(':')[2].split('/')[0]}"     # HOST:PORT, as a scrape would say
    pushed = {}
    for labels, samples in receiver.samples.items():
        d = dict(labels)
        if d.get("run_id") != "rw-1":
            continue
        assert (d["job"], d["instance"], d["cluster"], d["region"]) == ("runwatch", host, "gpu-a", "westeurope")
        name = d.pop("__name__")
        for k in ("job", "instance", "cluster", "region"):
            del d[k]
        pushed[(name, tuple(sorted(d.items())))] = samples
    scraped = {(n, tuple((k, v) for k, v in labels if v)): v for (n, labels), v in scraped.items()}  # url="": no label
    # every series /metrics showed was pushed, with the value it had then (it was not moving any more)
    assert set(scraped) <= set(pushed), set(scraped) - set(pushed)
    for key, value in scraped.items():
        if key[0] not in MOVING:
            assert value in [v for _, v in pushed[key]], (key, value, pushed[key][-3:])
    # the end: the final state, then every series of the run closed by a stale marker after its last value
    final = {k: s[-1][1] for k, s in pushed.items()}
    assert final[("runwatch_tasks_failed_total", (("run_id", "rw-1"),))] == 1
    assert final[("runwatch_run_state", (("run_id", "rw-1"), ("runwatch_run_state", "succeeded")))] == 1
    for labels, samples in receiver.samples.items():
        stale = receiver.stale.get(labels)
        assert stale and stale[-1] > samples[-1][0], dict(labels)

    hdrs = receiver.requests[0]
    assert hdrs["Content-Encoding"] == "snappy" and hdrs["Content-Type"] == "application/x-protobuf"
    assert hdrs["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert all(h["Authorization"] == "Bearer s3cret-token" and h["X-Scope-OrgID"] == "team-a"
               for h in receiver.requests)
    assert receiver.metadata["runwatch_errors_total"][:2] == ("counter", "Error lines and error events.")
    assert receiver.metadata["runwatch_run_info"][0] == "gauge"
    assert receiver.metadata["runwatch_run_progress_ratio"][0] == "gauge"
    assert not receiver.rejected
    assert b"s3cret-token" not in out + err


@pytest.mark.stack()   # waits out real client timeouts and retries
def test_4xx_dropped_and_counted_5xx_and_429_resent(tmp_path, receiver):
    receiver.respond(400, count=2)
    p, gate, url = _start_run(tmp_path, receiver)
    try:
        wait_for(lambda: receiver.accepted >= 2, 30, what="pushes accepted after the two 400s")
        text = requests.get(url, timeout=5).text
        dropped = sample(text, "runwatch_remote_write_samples_dropped_total", url=receiver.url, reason="bad_request")
        assert dropped and dropped > 0
        assert sample(text, "runwatch_remote_write_requests_total", url=receiver.url, code="400") == 2
        assert sample(text, "runwatch_push_up", url=receiver.url) == 1
        # 503 twice then 429 with Retry-After: the same request again each time, then accepted
        n = len(receiver.requests)
        receiver.respond(503, count=2)
        wait_for(lambda: receiver._mode is None, 30, what="two 503s answered")
        receiver.respond(429, retry_after="0.3", count=1)
        wait_for(lambda: receiver._mode is None and receiver.accepted >= 4, 30, what="the 429 answered")
        text = wait_for(lambda: (t := requests.get(url, timeout=5).text)
                        and sample(t, "runwatch_remote_write_requests_total", url=receiver.url, code="429") == 1 and t,
                        10, what="429 counted")
        assert sample(text, "runwatch_remote_write_requests_total", url=receiver.url, code="503") == 2
        assert sample(text, "runwatch_remote_write_samples_failed_total", url=receiver.url) > 0
        assert sample(text, "runwatch_remote_write_samples_dropped_total", url=receiver.url,
                      reason="bad_request") == dropped          # retried, not dropped
        assert len(receiver.requests) > n + 3
    finally:
        gate.touch()
    p.communicate(timeout=60)
    assert not receiver.rejected
    # nothing was lost after the 400s: one `runwatch_runs` sample per write, no gap of a missed write
    (samples,) = receiver.series("runwatch_runs").values()
    ts = [t for t, _ in samples]
    assert ts == sorted(set(ts))


@pytest.mark.stack       # two runwatch serve processes, an outage and flush timeouts: seconds of waiting
def test_outage_and_restart_lose_nothing_and_stay_in_order(tmp_path, receiver):
    """The receiver goes away; `runwatch serve` is restarted while it is away (what was
    queued goes to the spool at exit); the receiver comes back: every write arrives, in order."""
    log = tmp_path / "job.log"
    log.write_text("Task 1/100: t1\n")
    cfg = tmp_path / "runwatch.yaml"
    cfg.write_text(f"""\
data_dir: data
remote_write:
  interval_seconds: 0.25
  flush_timeout_seconds: 1
  min_backoff_seconds: 0.1
  max_backoff_seconds: 0.5
  external_labels: {{cluster: edge}}
  endpoints:
    - url: {receiver.url}
runs:
  - id: job-1
    file: {log}
    packs: [waa]
""")
    port = free_port()

    def serve():
        return subprocess.Popen(runwatch_cmd("serve", "-c", str(cfg), "--listen", f"127.0.0.1:{port}"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def writes_since(t0):
        (s,) = receiver.series("runwatch_runs").values() or [[]]
        return [t for t, _ in s if t >= t0 * 1000]

    a = serve()
    b = None
    try:
        wait_for(lambda: receiver.latest("runwatch_tasks_started_total", run_id="job-1") == 1, 30, what="first push")
        down_at = time.time()
        receiver.go_away()
        with open(log, "a") as f:
            f.write("Task 2/100: t2\n")
        url = f"http://127.0.0.1:{port}/metrics"
        wait_writes_while_down(url, 3)
        a.terminate()
        _, err_a = a.communicate(timeout=30)
        a_stopped = time.time()
        assert b"spooled" in err_a, err_a.decode()
        b = serve()
        wait_for(lambda: requests.get(url, timeout=1).ok, 30, what="the second serve up")
        b_started = time.time()
        with open(log, "a") as f:
            f.write("Task 3/100: t3\n")
        wait_writes_while_down(url, 3)
        up_at = time.time()
        receiver.come_back()
        wait_for(lambda: receiver.latest("runwatch_tasks_started_total", run_id="job-1") == 3, 30,
                 what="the writes of both processes delivered")
        b.terminate()
        b.communicate(timeout=30)
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert not receiver.rejected, receiver.rejected[:3]      # out of order or duplicated: the receiver says 400
    (samples,) = receiver.series("runwatch_runs", cluster="edge").values()
    ts = [t / 1000 for t, _ in samples]
    first_a_outage = [t for t in ts if down_at < t < a_stopped]
    first_b_outage = [t for t in ts if b_started < t < up_at]
    assert len(first_a_outage) >= 3, (down_at, a_stopped, ts[-20:])
    assert len(first_b_outage) >= 3, (b_started, up_at, ts[-20:])
    for window in (first_a_outage, first_b_outage):     # one write per interval kept, none missing
        assert max(b - a for a, b in zip(window, window[1:], strict=False)) < 3.0, window
    # the lines written during the outage were counted and pushed
    started = receiver.series("runwatch_tasks_started_total", run_id="job-1")
    (vals,) = started.values()
    assert [v for _, v in vals if v != vals[0][1]][:1] == [2.0]


def test_series_writer_stale_marker_when_a_series_ends():
    from prometheus_client.core import GaugeMetricFamily

    def fam(*runs):
        g = GaugeMetricFamily("runwatch_run_progress_ratio", "p", labels=["run_id"])
        for r in runs:
            g.add_metric([r], 0.5)
        return [g]
    w = SeriesWriter({"job": "runwatch", "instance": "h"})
    w.write(fam("a", "b"), now=100.0)
    body, n = w.write(fam("a"), now=101.0)
    series, meta = decode_write_request(body)
    got = {dict(k)["run_id"]: s for k, s in series}
    assert n == 2 and got["a"] == [(101000, 0.5, False)]
    assert got["b"][0][0] == 101000 and got["b"][0][2]     # b ended: its stale marker
    body, n = w.write(fam("a"), now=101.0, final=True)       # same clock: still strictly later
    (k, s), = decode_write_request(body)[0]
    assert [(t, st) for t, _, st in s] == [(101001, False), (101002, True)]
    assert STALE_NAN_BITS == 0x7FF0000000000002 and not meta.get("x")


def test_bad_config_names_file_line_and_nearest_key(tmp_path):
    cfg = tmp_path / "runwatch.yaml"
    cfg.write_text("remote_write:\n  endpoints:\n    - url: http://h:9090/api/v1/write\n      tennant: a\n"
                   "runs:\n  - id: a\n    file: x.log\n")
    r = run_cli("check", "-c", str(cfg))
    assert r.returncode == 1
    assert f"{cfg}:4" in r.stderr and "tennant" in r.stderr and 'did you mean "tenant"' in r.stderr, r.stderr


@pytest.mark.stack()   # takes long: the full suite runs it, the fast loop does not
def test_without_cramjam_the_error_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['cramjam'] = None\n"
            "from runwatch.cli import main\n"
            "sys.exit(main(['run', '--remote-write', 'http://127.0.0.1:1/api/v1/write',"
            f" '--data-dir', {str(tmp_path)!r}, '--', 'true']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "pip install 'runwatch[push]'" in r.stderr, r.stderr


def test_compose_prometheus_accepts_remote_write():
    """The stack's Prometheus takes pushes too (docs/remote-write.md)."""
    from support.paths import REPO
    import yaml
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert "--web.enable-remote-write-receiver" in compose["services"]["prometheus"]["command"]


def test_spool_order_bound_slots_and_a_corrupt_file(tmp_path):
    from runwatch.export.remote_write.spool import Spool, SpoolCorrupt

    s = Spool(str(tmp_path), max_bytes=100)
    assert s.append(b"b" * 20, 2) and s.append(b"c" * 20, 3)
    assert s.put_front([(b"a" * 20, 1), (b"x" * 40, 9)]) == (1, 9)        # the second would pass the bound
    assert not s.append(b"d" * 40, 4) and s.bytes <= 100
    other = Spool(str(tmp_path), max_bytes=100)          # a second process on the same data directory
    assert other.dir != s.dir and len(other) == 0
    other.close()
    got = []
    while (item := s.oldest()) is not None:
        seq, body, n = item
        got.append((body[:1], n))
        s.remove(seq)
    assert got == [(b"a", 1), (b"b", 2), (b"c", 3)] and s.bytes == 0
    s.append(b"e" * 10, 5)
    s.close()
    with open(s.path(s.seqs[0]), "r+b") as f:
        f.truncate(15)                                    # a crash mid-write of an older version, say
    again = Spool(str(tmp_path), max_bytes=100)            # the restart takes the same slot and sees it
    assert again.dir == s.dir and len(again) == 1
    with pytest.raises(SpoolCorrupt) as e:
        again.oldest()
    assert e.value.args[1:] == ("truncated", 5)
    again.close()


def test_full_memory_queue_spills_to_the_spool_in_order(tmp_path, receiver):
    from prometheus_client.core import GaugeMetricFamily

    from runwatch.export.remote_write.config import EndpointConfig, RemoteWriteConfig
    from runwatch.export.remote_write.sender import Endpoint, snappy_compressor

    receiver.go_away()
    cfg = RemoteWriteConfig(endpoints=[EndpointConfig(url=receiver.url)], queue_max_bytes=1024,
                            min_backoff=0.05, max_backoff=0.2)
    ep = Endpoint(cfg.endpoints[0], cfg, str(tmp_path / "spool"))
    ep.thread.start()
    w, compress = SeriesWriter({"job": "runwatch", "instance": "h"}), snappy_compressor()
    try:
        for i in range(12):
            g = GaugeMetricFamily("runwatch_runs", "Runs.", value=i)
            pad = GaugeMetricFamily("runwatch_run_metric", "pad", labels=["run_id", "name"])
            for k in range(30):                               # ~0.4 KiB per request: the queue holds two
                pad.add_metric(["r", f"m{k}"], float(k))
            body, n = w.write([g, pad], now=1000.0 + i)
            ep.enqueue(compress(body), n)
        assert ep.spooling and ep.spool.bytes > 0 and ep.q_samples <= 2 * 31
        receiver.come_back()
        wait_for(lambda: ep.sent == 12 * 31, 30, what="every request delivered")
    finally:
        ep.stop(time.monotonic() + 1)
        ep.join()
        ep.release()
    assert not receiver.rejected
    (samples,) = receiver.series("runwatch_runs").values()
    assert samples == [(1000000 + 1000 * i, float(i)) for i in range(12)]
    assert not any(ep.dropped.values()) and ep.failed > 0


@pytest.mark.stack("openssl")
def test_https_receiver_verified_with_the_given_ca_and_refused_without(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    srv = RemoteWriteServer(tls=(str(cert), str(key)))
    try:
        # without the CA the certificate is not trusted: nothing accepted, pushes fail and are retried
        p, gate, url = _start_run(tmp_path, srv, run_id="tls-0")
        wait_for(lambda: (sample(requests.get(url, timeout=2).text, "runwatch_push_up", url=srv.url) == 0), 30,
                 what="push_up 0 against an untrusted certificate")
        assert srv.accepted == 0
        gate.touch()
        p.communicate(timeout=60)
        gate.unlink()
        # with it: accepted (and the spool of the first process goes first)
        p, gate, url = _start_run(tmp_path, srv, "--remote-write-ca-file", str(cert), run_id="tls-1")
        wait_for(lambda: srv.latest("runwatch_tasks_started_total", run_id="tls-1") == 2, 30, what="pushes over https")
        gate.touch()
        p.communicate(timeout=60)
        assert srv.series("runwatch_tasks_started_total", run_id="tls-0") and not srv.rejected
    finally:
        srv.stop()


@pytest.mark.stack()   # waits out real client timeouts and retries
def test_each_receiver_has_its_own_queue(tmp_path, receiver):
    """Two --remote-write URLs: one answers 503 throughout, the other still gets every push."""
    broken = RemoteWriteServer()
    broken.respond(503)
    try:
        # at exit the broken receiver's queue goes to the spool after the flush timeout (default 5 s)
        p, gate, url = _start_run(tmp_path, receiver, "--remote-write", broken.url, "--remote-write-flush-timeout", "1")
        wait_for(lambda: receiver.latest("runwatch_tasks_started_total", run_id="rw-1") == 2, 30,
                 what="pushes to the working receiver")
        text = wait_for(lambda: (t := requests.get(url, timeout=2).text)
                        and (sample(t, "runwatch_remote_write_requests_total", url=broken.url, code="503") or 0) >= 2
                        and t, 30, what="the broken receiver retried")
        assert sample(text, "runwatch_push_up", url=broken.url) == 0
        assert sample(text, "runwatch_push_up", url=receiver.url) == 1
        assert sample(text, "runwatch_remote_write_samples_sent_total", url=broken.url) == 0
        gate.touch()
        p.communicate(timeout=60)
        assert broken.accepted == 0 and len(broken.requests) >= 2
    finally:
        broken.stop()
