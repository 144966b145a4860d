"""The HTTP server cannot be starved and answers strictly: every test runs a
live `runwatch demo` over loopback, does what a hostile or careless client
does (idle and half-sent connections, too many streams, a body on GET,
HTTP/0.9, huge headers, a foreign Host), and checks that the offender got a
clear answer and that /metrics still answers and parses."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from support.prom_text import sample
from support.waits import wait_for

# live runwatch processes, one or more per test: the full suite runs them, the fast loop does not
pytestmark = pytest.mark.stack()


def scrape_ok(rw) -> str:
    """/metrics answers 200 and parses as Prometheus text; /healthz answers ok."""
    r = requests.get(rw.url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text[:300]
    families = {f.name for f in text_string_to_metric_families(r.text)}
    assert "runwatch_http_connections" in families
    assert requests.get(rw.url + "/healthz", timeout=10).text == "ok\n"
    return r.text


def connect(rw) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", rw.port), timeout=30)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything until the server closes the connection (the socket timeout bounds
    the wait); a reset (the server closed with our request unread) ends it too."""
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def read_response(s: socket.socket) -> bytes:
    """One complete answer with a Content-Length body."""
    out = b""
    while b"\r\n\r\n" not in out:
        chunk = s.recv(65536)
        assert chunk, f"closed after {out!r}"
        out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(body) < n:
        chunk = s.recv(65536)
        assert chunk
        body += chunk
    return head + b"\r\n\r\n" + body


def demo(runwatch_proc, *flags, **kw):
    return runwatch_proc("demo", "--speed", "10", *flags, **kw).wait_up(30)


def test_metrics_answer_while_hundreds_of_idle_and_half_sent_connections_are_open(runwatch_proc):
    rw = demo(runwatch_proc)
    held = []
    try:
        for i in range(300):
            s = connect(rw)
            if i % 3 == 1:      # half-sent: a request line and part of a header, no blank line
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            elif i % 3 == 2:    # a keep-alive connection left idle after one answer
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert read_response(s).startswith(b"HTTP/1.1 200")
            held.append(s)
        text = wait_for(lambda: (t := scrape_ok(rw)) and (sample(t, "runwatch_http_connections") or 0) >= 300 and t,
                        60, what="a scrape that sees the held connections")
        assert sample(text, "runwatch_http_connections") >= 300
        for _ in range(5):          # several scrapes in a row, each on a new connection
            scrape_ok(rw)
        # and the server has not evicted any of them (512 fit)
        assert sample(scrape_ok(rw), "runwatch_http_dropped_total", reason="evicted") == 0
    finally:
        for s in held:
            s.close()


def test_a_half_sent_request_is_closed_with_408_after_the_read_timeout(runwatch_proc):
    rw = demo(runwatch_proc, "--http-read-timeout", "1")
    s = connect(rw)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")     # never finished
    answer = read_all(s)           # the server closes it; we only wait for that
    s.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"Connection: close" in answer
    text = scrape_ok(rw)
    assert sample(text, "runwatch_http_dropped_total", reason="request_timeout") >= 1


def test_a_connection_that_sends_nothing_is_closed_after_the_read_timeout(runwatch_proc):
    rw = demo(runwatch_proc, "--http-read-timeout", "1")
    s = connect(rw)
    assert read_all(s) == b""       # closed silently: nothing was asked
    s.close()
    assert sample(scrape_ok(rw), "runwatch_http_dropped_total", reason="request_timeout") >= 1


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(runwatch_proc):
    rw = demo(runwatch_proc, "--http-idle-timeout", "1")
    s = connect(rw)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    first = read_response(s)
    assert first.startswith(b"HTTP/1.1 200") and b"Connection: close" not in first
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")   # keep-alive works: a second answer
    assert read_response(s).startswith(b"HTTP/1.1 200")
    assert read_all(s) == b""       # then idle: closed by the server
    s.close()
    assert sample(scrape_ok(rw), "runwatch_http_dropped_total", reason="idle_timeout") >= 1


def test_at_the_connection_limit_the_oldest_idle_connection_makes_room(runwatch_proc):
    rw = demo(runwatch_proc, "--http-max-connections", "20")
    held = [connect(rw) for _ in range(40)]
    try:
        for s in held:          # all accepted in order; make sure the server has seen each
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        text = wait_for(lambda: (t := scrape_ok(rw)) and
                        (sample(t, "runwatch_http_dropped_total", reason="evicted") or 0) >= 20 and t,
                        60, what="20 evictions")
        assert sample(text, "runwatch_http_connections") <= 20
        assert read_all(held[0]) == b""           # the oldest were closed
    finally:
        for s in held:
            s.close()


def test_under_a_low_open_files_limit_idle_connections_are_evicted_and_scrapes_answer(runwatch_proc):
    import resource

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (160, 160))
    rw = runwatch_proc("demo", "--speed", "10", preexec_fn=low_limit).wait_up(30)
    held = []
    try:
        for _ in range(300):             # more than the process has file descriptors
            held.append(connect(rw))
        text = wait_for(lambda: (t := scrape_ok(rw)) and
                        (sample(t, "runwatch_http_dropped_total", reason="evicted") or 0) >= 200 and t,
                        60, what="evictions under the open-files limit")
        assert sample(text, "runwatch_http_connections") <= 160 - 64
    finally:
        for s in held:
            s.close()
    scrape_ok(rw)


def test_stream_clients_beyond_the_bound_get_503_with_retry_after(runwatch_proc):
    rw = demo(runwatch_proc, "--http-max-streams", "2")
    streams = [requests.get(rw.url + "/api/stream", stream=True, timeout=30) for _ in range(2)]
    try:
        assert all(r.status_code == 200 for r in streams)
        third = requests.get(rw.url + "/api/stream", timeout=30)
        assert third.status_code == 503
        assert third.headers["Retry-After"].isdigit()
        assert "status page clients" in third.text
        text = scrape_ok(rw)            # scrapes are not streams: they still answer
        assert sample(text, "runwatch_http_refused_total", reason="streams") == 1
        assert sample(text, "runwatch_http_streams") == 2
    finally:
        for r in streams:
            r.close()
    # a closed stream frees its slot
    wait_for(lambda: requests.get(rw.url + "/api/stream", stream=True, timeout=30).status_code == 200, 30,
             what="a stream slot to free up")


def test_requests_beyond_the_bound_get_503_and_scrapes_keep_their_own_slots(runwatch_proc):
    token = "hardening-token"
    rw = demo(runwatch_proc, "--events", "--http-max-requests", "2", "--http-read-timeout", "60",
              env=dict(os.environ, RUNWATCH_TOKEN=token))
    slow = []
    try:
        for _ in range(2):      # two writers whose bodies never arrive hold both request slots
            s = connect(rw)
            s.sendall(b"POST /api/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + token.encode() +
                      b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            slow.append(s)
        r, = wait_for(lambda: (x := requests.get(rw.url + "/api/runs", timeout=10)).status_code == 503 and [x],
                      30, what="503 for an API request while both slots are held")
        assert r.headers["Retry-After"] == "1"
        text = scrape_ok(rw)
        assert sample(text, "runwatch_http_refused_total", reason="busy") >= 1
    finally:
        for s in slow:
            s.close()
    wait_for(lambda: requests.get(rw.url + "/api/runs", timeout=10).status_code == 200, 30,
             what="the slots to free up once the writers are gone")


def test_a_body_on_get_is_refused_never_answered_as_a_second_request(runwatch_proc):
    rw = demo(runwatch_proc)
    smuggled = b"GET /api/runs HTTP/1.1\r\nHost: localhost\r\n\r\n"
    s = connect(rw)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(smuggled) + smuggled)
    answer = read_all(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 1, answer        # one answer, then the connection closed
    assert b"has no body" in answer
    assert sample(scrape_ok(rw), "runwatch_http_refused_total", reason="bad_request") >= 1


def test_chunked_bodies_and_doubled_lengths_are_refused(runwatch_proc):
    rw = demo(runwatch_proc)
    for head, code in ((b"POST /api/events HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
                       (b"POST /api/events HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n"
                        b"Content-Length: 40\r\n\r\n{}", 400)):
        s = connect(rw)
        s.sendall(head)
        answer = read_all(s)
        s.close()
        assert answer.startswith(b"HTTP/1.1 %d " % code), answer[:200]
        assert answer.count(b"HTTP/1.1 ") == 1
    scrape_ok(rw)


def test_http_0_9_is_refused(runwatch_proc):
    rw = demo(runwatch_proc)
    s = connect(rw)
    s.sendall(b"GET /metrics\r\n")
    answer = read_all(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]     # a status line, not a bare metrics body
    assert b"HTTP/0.9" in answer and b"runwatch_" not in answer
    tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\r\n\r\n"          # TLS spoken to a plain-HTTP port
    for line, code in ((b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505), (tls_hello, 400)):
        s = connect(rw)
        s.sendall(line)
        assert read_all(s).startswith(b"HTTP/1.1 %d " % code)
        s.close()
    scrape_ok(rw)


def test_oversized_headers_get_431(runwatch_proc):
    rw = demo(runwatch_proc)
    s = connect(rw)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nCookie: " + b"a" * 40000 + b"\r\n\r\n")
    answer = read_all(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    s = connect(rw)       # one that never ends its head: 431 as soon as it is over the limit
    with contextlib.suppress(OSError):
        s.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X-A: b\r\n" * 10000)
    assert read_all(s).startswith(b"HTTP/1.1 431 ")
    s.close()
    assert sample(scrape_ok(rw), "runwatch_http_refused_total", reason="header_too_large") == 2


def test_pipelined_requests_on_one_connection_are_answered_in_order(runwatch_proc):
    rw = demo(runwatch_proc)
    s = connect(rw)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
              b"GET /api/nothing HTTP/1.1\r\nHost: localhost\r\n\r\n"
              b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    answer = read_all(s)
    s.close()
    codes = re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert codes == [b"200", b"404", b"200"]


def test_expect_100_continue_then_the_answer_both_carry_the_security_headers(runwatch_proc):
    token = "hardening-token"
    rw = demo(runwatch_proc, "--events", env=dict(os.environ, RUNWATCH_TOKEN=token))
    body = b'{"run_id": "curl-run", "type": "phase", "phase": "train"}'
    s = connect(rw)
    s.sendall(b"POST /api/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + token.encode() +
              b"\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
    interim = b""
    while b"\r\n\r\n" not in interim:
        interim += s.recv(4096)
    assert interim.startswith(b"HTTP/1.1 100 "), interim
    s.sendall(body)
    answer = read_response(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    assert b"X-Frame-Options: DENY" in answer and b"frame-ancestors 'none'" in answer
    # a refused write gets its answer at once, without the body being asked for
    s = connect(rw)
    s.sendall(b"POST /api/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer wrong\r\n"
              b"Expect: 100-continue\r\nContent-Length: 100000\r\n\r\n")
    answer = read_all(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    scrape_ok(rw)


# ---------------------------------------------------------------- headers and hosts

def test_every_answer_forbids_framing_and_the_page_allows_only_its_own_script(runwatch_proc):
    rw = demo(runwatch_proc)
    for path in ("/", "/metrics", "/healthz", "/api/runs", "/nothing"):
        r = requests.get(rw.url + path, timeout=10)
        assert r.headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"], path
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    csp = requests.get(rw.url + "/", timeout=10).headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    script_src = csp.split("script-src", 1)[1].split(";", 1)[0].split()
    assert script_src[0] == "'self'" and all(x.startswith("'sha256-") for x in script_src[1:]), csp


def test_a_foreign_host_header_is_refused_on_loopback(runwatch_proc):
    rw = demo(runwatch_proc)
    for host in ("evil.example", f"evil.example:{rw.port}", "10.0.0.1"):
        r = requests.get(rw.url + "/api/runs", headers={"Host": host}, timeout=10)
        assert r.status_code == 403, host
        assert "--allowed-host" in r.json()["error"]
    for host in ("localhost", f"localhost:{rw.port}", f"127.0.0.1:{rw.port}", f"[::1]:{rw.port}"):
        assert requests.get(rw.url + "/api/runs", headers={"Host": host}, timeout=10).status_code == 200, host
    assert sample(scrape_ok(rw), "runwatch_http_refused_total", reason="host") == 3


def test_allowed_host_adds_a_name(runwatch_proc):
    rw = demo(runwatch_proc, "--allowed-host", "runwatch.internal")
    assert requests.get(rw.url + "/api/runs", headers={"Host": "runwatch.internal:80"}, timeout=10).ok
    assert requests.get(rw.url + "/api/runs", headers={"Host": "evil.example"}, timeout=10).status_code == 403


def test_listening_beyond_loopback_without_tls_or_auth_warns(runwatch_proc):
    from support.ports import free_port
    port = free_port()
    rw = runwatch_proc("demo", "--speed", "10", "--listen", f"0.0.0.0:{port}", port=port).wait_up(30)
    wait_for(lambda: "without TLS or basic auth" in rw.stderr_text(), 10, what="the exposure warning")
    assert "--web.config.file" in rw.stderr_text()
    # beyond loopback the Host check is off unless --allowed-host names hosts
    assert requests.get(rw.url + "/api/runs", headers={"Host": "box.example"}, timeout=10).ok
    scrape_ok(rw)


def test_loopback_gives_no_warning(runwatch_proc):
    rw = demo(runwatch_proc)
    scrape_ok(rw)
    assert "warning" not in rw.stderr_text()


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_listen_addresses(runwatch_proc):
    from support.ports import free_port
    port = free_port()
    rw = runwatch_proc("demo", "--speed", "10", "--listen", f"[::1]:{port}", port=port)
    rw.url = f"http://[::1]:{port}"
    rw.wait_up(30)
    scrape_ok(rw)
    assert requests.get(rw.url + "/api/runs", timeout=10).ok          # Host: [::1]:PORT is allowed
    assert "warning" not in rw.stderr_text()
    port = free_port()
    every = runwatch_proc("demo", "--speed", "10", "--listen", f"[::]:{port}", port=port)
    every.url = f"http://[::1]:{port}"
    every.wait_up(30)
    scrape_ok(every)
    wait_for(lambda: "every interface" in every.stderr_text(), 10, what="the exposure warning for [::]")


def test_an_unbracketed_ipv6_address_is_a_usage_error(runwatch_proc):
    rw = runwatch_proc("demo", "--listen", "::1:9897")
    assert rw.p.wait(30) == 2
    assert "needs brackets: [::1]:9897" in rw.stderr_text()


# ---------------------------------------------------------------- the page under its real CSP

@pytest.mark.stack("chromium")
def test_the_status_page_works_under_its_csp_and_cannot_be_framed(runwatch_proc):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(chromium):
        pytest.skip("Debian chromium not installed (apt-get install chromium)")
    rw = demo(runwatch_proc)
    profile = tempfile.mkdtemp(prefix="runwatch-chromium-")
    try:
        with sync_api.sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                       args=["--headless", "--no-sandbox", "--disable-gpu",
                                                             "--disable-dev-shm-usage"])
            try:
                page = ctx.new_page()
                console = []
                page.on("console", lambda m: console.append(m.text))
                page.goto(rw.url + "/")
                page.wait_for_selector('section.card[data-run="demo-docker-build"] .badge', timeout=30000)
                page.wait_for_selector("#live.live", timeout=30000)       # the event stream connected
                assert not [m for m in console if "Content Security Policy" in m], console
                # a page elsewhere cannot frame it
                other = ctx.new_page()
                other.set_content(f'<iframe id="f" src="{rw.url}/"></iframe>')
                frame = wait_for(lambda: next((f for f in other.frames if f != other.main_frame), None), 30,
                                 what="the iframe")
                wait_for(lambda: frame.url != "about:blank", 30, what="the iframe to navigate")
                assert frame.url.startswith("chrome-error://") or not frame.query_selector("section.card")
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    scrape_ok(rw)


# ---------------------------------------------------------------- the listen address parser

@pytest.mark.parametrize("text, want", [
    ("127.0.0.1:9897", ("127.0.0.1", 9897)), (":9897", ("127.0.0.1", 9897)), ("[::1]:9897", ("::1", 9897)),
    ("[::]:80", ("::", 80)), ("0.0.0.0:0", ("0.0.0.0", 0)), ("localhost:1", ("localhost", 1)),
    ("[fe80::1%eth0]:9897", ("fe80::1%eth0", 9897)),
])
def test_parse_listen_takes_ipv4_ipv6_and_names(text, want):
    from runwatch.settings import parse_listen
    assert parse_listen(text) == want


@pytest.mark.parametrize("text, words", [
    ("::1:9897", "needs brackets: [::1]:9897"), ("[127.0.0.1]:80", "brackets hold an IPv6 address"),
    ("[::1:80", "brackets hold"), ("9897", "expected HOST:PORT"), ("host:99999", "expected HOST:PORT"),
    ("a b:80", "expected HOST:PORT"),
])
def test_parse_listen_refuses_with_the_expected_form(text, words):
    from runwatch.settings import parse_listen
    with pytest.raises(ValueError, match=re.escape(words)):
        parse_listen(text)


def test_is_loopback():
    from runwatch.settings import is_loopback
    assert all(map(is_loopback, ("127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost", "LOCALHOST.", "a.localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "10.0.0.1", "example.com", "localhost.example.com")))
