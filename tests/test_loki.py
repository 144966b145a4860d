"""The Loki shipper against a local double of Loki's push API: every line
arrives exactly once and in order through 429s, 5xx, hangs, resets, outages
and restarts; what is dropped is counted."""
from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from runwatch.export.loki import LokiConfig, Shipper, level_of, parse_auth, read_segment
from runwatch.export.loki.shipper import GROW_AFTER, MIN_BATCH_BYTES
from runwatch.settings import parse_size

from support.loki_double import LokiServer
from support.ports import free_port
from support.procs import runwatch_cmd
from support.prom_text import sample
from support.waits import wait_for

SKEY = ("eval", "command")


@pytest.fixture
def srv():
    s = LokiServer()
    yield s
    s.stop()


def shipper(srv, tmp_path, **kw) -> Shipper:
    opts = dict(url=srv.url, spool_dir=str(tmp_path / "spool"), batch_wait=0.05, min_backoff=0.02,
                max_backoff=0.2, timeout=0.5, flush_timeout=1.0)
    opts.update(kw)
    return Shipper(LokiConfig(**opts)).start()


def feed(sh, start, count, per_block=100, run_id="r1", ts=None, step=0.0):
    for i in range(start, start + count, per_block):
        k = min(per_block, start + count - i)
        block = "".join(f"line {j}\n" for j in range(i, i + k)).encode()
        sh.ship_block(SKEY, run_id, "bench", block, k, ts if ts is not None else time.time())
        if ts is not None:
            ts += step
        if step == 0 and ts is None and i % 2000 == 0:
            time.sleep(0.001)


def expect_all(srv, n, stall=30.0):
    """Wait for n entries; fail when their number has not grown for `stall` seconds
    (delivery stuck), however slow the machine is otherwise."""
    have, since = len(srv.entries), time.monotonic()
    while have < n:
        time.sleep(0.05)
        now = len(srv.entries)
        if now > have:
            have, since = now, time.monotonic()
        assert time.monotonic() - since < stall, f"no new entries for {stall:.0f} s: have {have} of {n}"
    time.sleep(0.1)
    got = srv.lines()
    assert len(got) == n, f"{len(got)} entries, expected {n} (duplicates?)"
    assert got == [f"line {i}" for i in range(n)]
    assert srv.out_of_order == 0
    stamps = [e[1] for e in srv.entries]
    assert all(a < b for a, b in zip(stamps, stamps[1:], strict=False)), "timestamps must increase within the stream"


def metrics(sh) -> str:
    reg = CollectorRegistry(auto_describe=False)

    class C:
        def collect(self):
            return sh.collect()
    reg.register(C())
    return generate_latest(reg).decode()


def test_push_format_labels_metadata_auth_tenant(srv, tmp_path):
    srv.require_headers = {"Authorization": "Basic " + base64.b64encode(b"bob:s3cret").decode(),
                           "X-Scope-OrgID": "team-a"}
    sh = shipper(srv, tmp_path, auth="bob:s3cret", tenant="team-a", host="box1")
    sh.ship_block(SKEY, "eval-7", "benchmark", b"2024 INFO start\nTraceback (most recent call last):\nplain\n",
                  3, time.time())
    sh.ship_block(SKEY, "eval-7", "benchmark", b"same ts\n", 1, 1.0)     # an earlier clock: clamped
    sh.close()
    assert len(srv.entries) == 4
    labels = dict(srv.entries[0][0])
    assert labels == {"service_name": "runwatch", "kind": "eval", "source": "command", "host": "box1"}
    metas = [e[3] for e in srv.entries]
    assert [m["level"] for m in metas] == ["info", "error", "unknown", "unknown"]
    assert all(m["run_id"] == "eval-7" and m["phase"] == "benchmark" for m in metas)
    h = srv.headers_seen[0]
    assert h["Content-Encoding"] == "gzip" and h["Content-Type"] == "application/json"
    text = metrics(sh)
    assert sample(text, "runwatch_loki_entries_sent_total") == 4
    assert sample(text, "runwatch_loki_entries_dropped_total", reason="bad_request") == 0
    assert sample(text, "runwatch_loki_queue_entries") == 0
    assert sample(text, "runwatch_loki_push_duration_seconds_count") >= 1
    assert "s3cret" not in text and "bob" not in text


def test_wrong_credentials_drop_and_count(srv, tmp_path):
    srv.require_headers = {"Authorization": "Bearer right"}
    sh = shipper(srv, tmp_path, auth="Bearer wrong")
    feed(sh, 0, 10)
    sh.close()
    assert sh.dropped["unauthorized"] == 10 and not srv.entries


@pytest.mark.stack
def test_429_storm_every_line_once_in_order(srv, tmp_path):
    srv.respond(429, count=25, retry_after="0.02")
    sh = shipper(srv, tmp_path)
    feed(sh, 0, 20000)
    expect_all(srv, 20000)
    sh.close()
    assert srv.statuses.count(429) == 25
    assert sh.requests["429"] == 25 and sum(sh.dropped.values()) == 0


@pytest.mark.stack
def test_5xx_hang_and_resets(srv, tmp_path):
    sh = shipper(srv, tmp_path)
    srv.respond(500)
    feed(sh, 0, 3000)
    time.sleep(0.4)
    srv.respond("hang", count=1)                 # the client times out (0.5 s) and retries
    feed(sh, 3000, 3000)
    time.sleep(0.7)
    srv.respond("reset", count=3)
    feed(sh, 6000, 3000)
    expect_all(srv, 9000)
    sh.close()
    assert sh.requests.get("500", 0) >= 1 and sh.requests.get("error", 0) >= 2
    assert sum(sh.dropped.values()) == 0


@pytest.mark.stack
def test_outage_with_restart_in_the_middle(srv, tmp_path):
    srv.go_away()
    sh1 = shipper(srv, tmp_path, queue_max_bytes=64 << 10, flush_timeout=0.3)
    feed(sh1, 0, 20000)
    assert metrics(sh1).count("runwatch_loki_spool_bytes") and sh1.spool.bytes > 0
    sh1.close()                                   # pending lines go to the front of the spool
    sh1.release()
    spooled = sum(r.lines for f in sorted(os.listdir(tmp_path / "spool" / "0")) if f.endswith(".seg")
                  for r in read_segment(str(tmp_path / "spool" / "0" / f))[0])
    assert spooled == 20000
    sh2 = shipper(srv, tmp_path, queue_max_bytes=64 << 10)       # "restart": same data dir
    feed(sh2, 20000, 20000)
    time.sleep(0.2)
    srv.come_back()
    expect_all(srv, 40000)
    sh2.close()
    assert sh2.spool.bytes == 0 and sum(sh2.dropped.values()) == 0


@pytest.mark.stack
def test_ten_minute_outage_at_1000_lines_per_second_loses_nothing(srv, tmp_path):
    srv.go_away()
    sh = shipper(srv, tmp_path, max_backoff=0.3, queue_max_bytes=4 << 20)
    start = time.time() - 600
    feed(sh, 0, 600_000, per_block=1000, ts=start, step=1.0)      # 1,000 lines/s for 10 minutes
    assert sh.spool.bytes > 0
    srv.come_back()
    expect_all(srv, 600_000)
    sh.close()
    assert sum(sh.dropped.values()) == 0
    assert srv.entries[0][1] // 10**9 == int(start)               # lines keep their own time


@pytest.mark.stack       # megabytes through a slow double: ~10 s (the shrink/grow rule itself: below)
def test_a_loki_slower_than_the_timeout_gets_smaller_batches_and_every_line_once(srv, tmp_path):
    """Loki needs longer than the push timeout for a full batch. Retrying that same
    request would time out forever (nothing delivered); the shipper retries its lines
    as smaller batches, so they all arrive, once each and in order."""
    # 1 MiB of these lines is ~7.7 MB of JSON: ~1.9 s at this rate, ~4x the 0.5 s timeout;
    # a 64 KiB batch takes ~0.12 s.
    srv.slow(per_byte=0.25e-6)
    srv.go_away()
    sh = shipper(srv, tmp_path)                   # batch_max_bytes 1 MiB (the default), timeout 0.5 s
    assert sh.cfg.batch_max_bytes == 1 << 20 and sh.cfg.timeout == 0.5
    feed(sh, 0, 200_000, per_block=1000)          # 2.4 MB waiting: the first push is a full batch
    srv.come_back()
    expect_all(srv, 200_000)
    assert sh.batch_bytes < sh.cfg.batch_max_bytes  # pushes timed out and the batches got smaller
    srv.slow(0)
    feed(sh, 200_000, 20_000)                     # and on, with Loki fast again
    expect_all(srv, 220_000)
    sh.close()
    assert sum(sh.dropped.values()) == 0 and sh.sent == 220_000


@pytest.mark.stack       # as above: ~7 s
def test_an_exit_while_pushing_smaller_batches_spools_exactly_what_was_not_accepted(srv, tmp_path):
    srv.slow(per_byte=0.25e-6)                    # as above: a full batch times out
    srv.go_away()
    sh1 = shipper(srv, tmp_path, flush_timeout=0.3)
    feed(sh1, 0, 150_000, per_block=1000)
    srv.come_back()
    wait_for(lambda: sh1.sent > 0 and sh1.batch_bytes < sh1.cfg.batch_max_bytes, 60,
             what="an accepted push after a timeout")
    sh1.close()
    sh1.release()
    spool = tmp_path / "spool" / "0"
    spooled = sum(r.lines for f in sorted(os.listdir(spool)) if f.endswith(".seg")
                  for r in read_segment(str(spool / f))[0])
    assert 0 < sh1.sent < 150_000 and spooled == 150_000 - sh1.sent
    srv.slow(0)
    sh2 = shipper(srv, tmp_path)                  # the next start sends the rest, after what Loki has
    expect_all(srv, 150_000)
    sh2.close()
    assert sum(sh1.dropped.values()) + sum(sh2.dropped.values()) == 0


def test_batch_size_halves_on_a_timeout_to_a_floor_and_doubles_back_when_pushes_are_quick(srv, tmp_path):
    sh = shipper(srv, tmp_path, timeout=10.0)
    full = sh.cfg.batch_max_bytes
    assert sh._shrink(full, 1000, 10.0) and sh.batch_bytes == full // 2
    assert sh._shrink(300 << 10, 1000, 10.0) and sh.batch_bytes == 150 << 10     # half of what timed out
    while sh._shrink(sh.batch_bytes, 1000, 10.0):
        pass
    assert sh.batch_bytes == MIN_BATCH_BYTES
    assert not sh._shrink(10 << 20, 1, 10.0)       # one line cannot be split: retried as it is

    def grow(size, seconds, times=GROW_AFTER):
        for _ in range(times):
            sh._grow(size, seconds)
        return sh.batch_bytes
    assert grow(MIN_BATCH_BYTES, 1.5) == MIN_BATCH_BYTES        # twice as big: 3 s, over a quarter of the timeout
    assert grow(MIN_BATCH_BYTES // 8, 0.2) == MIN_BATCH_BYTES   # a small batch, scaled to twice the size: 3.2 s
    assert grow(MIN_BATCH_BYTES, 1.0, GROW_AFTER - 1) == MIN_BATCH_BYTES      # 2 s < 2.5 s, but not yet ...
    assert grow(MIN_BATCH_BYTES, 1.5, 1) == MIN_BATCH_BYTES     # ... and a slow one starts the count again
    assert grow(MIN_BATCH_BYTES, 1.0) == 2 * MIN_BATCH_BYTES    # GROW_AFTER quick ones in a row
    assert grow(sh.batch_bytes, 0.01, 20 * GROW_AFTER) == full  # never above batch_max_bytes
    sh.close()


def test_bad_request_drops_the_batch_and_counts(srv, tmp_path):
    sh = shipper(srv, tmp_path)
    srv.respond(400, count=1, body="error parsing labels\n")
    feed(sh, 0, 100)
    wait_for(lambda: sh.dropped["bad_request"] == 100, 5, what="drop counted")
    srv.respond(400, count=1, body="entry for stream '{x=\"y\"}' has timestamp too old: 2020-01-01\n")
    feed(sh, 100, 50)
    wait_for(lambda: sh.dropped["too_old"] == 50, 5, what="too_old counted")
    feed(sh, 150, 50)
    sh.close()
    assert srv.lines() == [f"line {i}" for i in range(150, 200)]
    text = metrics(sh)
    assert sample(text, "runwatch_loki_entries_dropped_total", reason="bad_request") == 100
    assert sample(text, "runwatch_loki_entries_dropped_total", reason="too_old") == 50


@pytest.mark.stack
def test_spool_bound_respected_and_overflow_counted(srv, tmp_path):
    srv.go_away()
    bound = 100 << 10
    sh = shipper(srv, tmp_path, queue_max_bytes=16 << 10, spool_max_bytes=bound)
    feed(sh, 0, 50000, per_block=50)
    assert sh.spool.bytes <= bound
    on_disk = sum(os.path.getsize(tmp_path / "spool" / "0" / f)
                  for f in os.listdir(tmp_path / "spool" / "0") if f.endswith(".seg"))
    assert on_disk <= bound
    full = sh.dropped["spool_full"]
    assert full > 0
    srv.come_back()
    wait_for(lambda: len(srv.entries) + full >= 50000, 20, what="the rest")
    sh.close()
    got = srv.lines()
    assert len(got) + sh.dropped["spool_full"] == 50000
    idx = [int(x.split()[1]) for x in got]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    assert sample(metrics(sh), "runwatch_loki_entries_dropped_total", reason="spool_full") == full


@pytest.mark.stack
def test_big_blocks_split_into_batches_of_at_most_the_limit(srv, tmp_path):
    sh = shipper(srv, tmp_path, batch_max_bytes=64 << 10)
    feed(sh, 0, 30000, per_block=30000)            # one ~300 KB block
    expect_all(srv, 30000)
    sh.close()
    assert srv.requests >= 5


def test_helpers():
    assert parse_size("1GiB") == 1 << 30 and parse_size("500M") == 500 << 20 and parse_size("4096") == 4096
    assert parse_auth("Bearer abc") == {"Authorization": "Bearer abc"}
    assert parse_auth("u:p")["Authorization"].startswith("Basic ")
    with pytest.raises(ValueError) as e:
        parse_auth("justsecret")
    assert "justsecret" not in str(e.value)
    assert level_of("2024 WARNING disk") == "warn" and level_of("CRITICAL x") == "critical"
    assert level_of("errors: 0") == "unknown"


@pytest.mark.stack
def test_runwatch_run_ships_and_a_restart_resends_the_spool(srv, tmp_path):
    """Real processes: Loki is down, runwatch is stopped with SIGTERM, lines are
    spooled; the next `runwatch run` on the same data dir sends them first."""
    port = srv.port
    srv.go_away()
    data = str(tmp_path / "data")
    script = ("import sys, time\n"
              "a, b = int(sys.argv[1]), int(sys.argv[2])\n"
              "for i in range(a, b): print(f'line {i}')\n"
              "print('token=SUPERSECRET123 done', flush=True)\n"
              "time.sleep(float(sys.argv[3]))\n")
    common = ["run", "--listen", f"127.0.0.1:{free_port()}", "--grace", "0", "--loki-url", f"http://127.0.0.1:{port}",
              "--data-dir", data, "--loki-flush-timeout", "0.5", "--kind", "eval", "--run-id", "e2e"]
    p = subprocess.Popen(runwatch_cmd(*common, "--", sys.executable, "-c", script, "0", "3000", "30"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for raw in p.stdout:
            if raw.startswith(b"token="):
                break
        time.sleep(0.3)
        p.send_signal(signal.SIGTERM)
        p.wait(15)
    finally:
        if p.poll() is None:
            p.kill()
    err = p.stderr.read().decode()
    assert "SUPERSECRET123" not in err
    assert any(f.endswith(".seg") for f in os.listdir(os.path.join(data, "loki-spool", "0"))), err
    srv.come_back()
    assert srv.port == port
    p2 = subprocess.run(runwatch_cmd(*common, "--", sys.executable, "-c", script, "3000", "4000", "0"),
                        capture_output=True, timeout=30)
    assert p2.returncode == 0, p2.stderr.decode()
    got = srv.lines("e2e")
    want = [f"line {i}" for i in range(3000)] + ["token=<redacted> done"] + \
           [f"line {i}" for i in range(3000, 4000)] + ["token=<redacted> done"]
    assert got == want
    assert dict(srv.entries[0][0]) == {"service_name": "runwatch", "kind": "eval", "source": "command",
                                       "host": dict(srv.entries[0][0])["host"]}
    assert not [f for f in os.listdir(os.path.join(data, "loki-spool", "0")) if f.endswith(".seg")
                and os.path.getsize(os.path.join(data, "loki-spool", "0", f))]


def test_config_loki_and_redact_keys(tmp_path):
    from runwatch.config import load_config
    from runwatch.yamlfile import ConfigError

    log = tmp_path / "a.log"
    log.write_text("x\n")
    good = tmp_path / "ok.yaml"
    good.write_text(f"loki:\n  url: http://loki:3100\n  tenant: t\n  spool_max_bytes: 200MiB\n"
                    f"  batch_wait_seconds: 0.5\nredact:\n  - 'internal-[0-9a-f]{{8}}'\n"
                    f"runs:\n  - id: a\n    file: {log}\n")
    cfg = load_config(str(good))
    assert cfg.loki.url == "http://loki:3100" and cfg.loki.spool_max_bytes == 200 << 20
    assert cfg.loki.batch_wait == 0.5 and cfg.redact == ["internal-[0-9a-f]{8}"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"loki:\n  url: http://loki:3100\n  tennant: t\nruns:\n  - id: a\n    file: {log}\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(bad))
    assert e.value.line == 3 and "tenant" in str(e.value)
    bad.write_text(f"redact:\n  - ok\n  - '(unclosed'\nruns:\n  - id: a\n    file: {log}\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(bad))
    assert e.value.line == 3


# Two records as the shipper wrote them before records had named fields (a
# segment left by an older runwatch must still be resent after an upgrade).
OLD_SEGMENT = (b'RWL1\x1f\x00\x00\x00\x0e\x00\x00\x00\x00\x80\xc0sQ\xda\x0c\x18\x02\x00\x00\x00'
               b'["eval","command","r1","bench"]line 0\nline 1\n'
               b'RWL1\x18\x00\x00\x00\x0b\x00\x00\x00\x05\x80\xc0sQ\xda\x0c\x18\x01\x00\x00\x00'
               b'["train","file","r2",""]\xc3\xbc ERROR x\n')


def test_a_segment_written_by_an_older_runwatch_reads_back_and_is_resent(srv, tmp_path):
    seg = tmp_path / "spool" / "0" / f"{10 ** 12:016d}.seg"
    seg.parent.mkdir(parents=True)
    seg.write_bytes(OLD_SEGMENT + b"RWL1\x05")                    # and a torn record at the end
    recs, bad = read_segment(str(seg))
    assert bad == 5
    assert [(r.stream, r.run_id, r.phase, r.first_ns, r.block, r.lines) for r in recs] == [
        (("eval", "command"), "r1", "bench", 1733000000000000000, b"line 0\nline 1\n", 2),
        (("train", "file"), "r2", "", 1733000000000000005, "ü ERROR x\n".encode(), 1)]
    sh = shipper(srv, tmp_path, max_age=10 ** 10)                 # the old segment's lines are from 2024
    wait_for(lambda: len(srv.entries) == 3, 10, what="the old segment's lines")
    sh.close()
    assert [(dict(e[0])["kind"], e[1], e[2], e[3]) for e in srv.entries] == [
        ("eval", 1733000000000000000, "line 0", {"run_id": "r1", "phase": "bench", "level": "unknown"}),
        ("eval", 1733000000000000001, "line 1", {"run_id": "r1", "phase": "bench", "level": "unknown"}),
        ("train", 1733000000000000005, "ü ERROR x", {"run_id": "r2", "level": "error"})]
    assert sh.dropped["spool_corrupt"] == 1 and not seg.exists()
