"""The web config (--web.config.file, the exporter-toolkit format): bad files
are clear errors naming the file, line and key; TLS and basic auth work
against real clients: requests, and a real Prometheus scraping over https
with basic auth (a wrong password: 401, the target down)."""
from __future__ import annotations

import os
import pathlib
import subprocess

import pytest
import requests
import yaml

from runwatch.web.webconfig import load_web_config
from runwatch.yamlfile import ConfigError
from support.ports import free_port
from support.procs import start_logged, stop_group
from support.prom_text import sample
from support.tools import binary
from support.waits import wait_for, wait_http

# live runwatch processes, one or more per test: the full suite runs them, the fast loop does not
pytestmark = pytest.mark.stack()

bcrypt = pytest.importorskip("bcrypt", reason="pip install 'runwatch[auth]'")

PASSWORD = "correct horse"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()     # cost 4: quick to check
TOKEN = "webconfig-token"


def write(tmp_path, text: str, name: str = "web.yml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def make_certs(d: pathlib.Path) -> tuple[str, str, str]:
    """A CA and a server certificate it signed (for 127.0.0.1 and localhost), by openssl."""
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True, timeout=120)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"),
        "-days", "1", "-subj", "/CN=runwatch test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"),
        "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
        "-CAcreateserial", "-out", str(d / "server.crt"), "-days", "1", "-extfile", str(d / "ext.cnf"))
    return str(d / "ca.crt"), str(d / "server.crt"), str(d / "server.key")


# ---------------------------------------------------------------- bad files: file, line, key

@pytest.mark.parametrize("text, line, words", [
    ("tls_server_config: {}\nbasic_auth_user:\n  a: b\n", 2, ["unknown key 'basic_auth_user'", "basic_auth_users"]),
    ("tls_server_config:\n  cert_file: x.crt\n", 1, ["missing key_file"]),
    ("tls_server_config:\n  key_file: x.key\n", 1, ["missing cert_file"]),
    ("tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n", 2, ["cert_file", "no such file"]),
    ("basic_auth_users:\n  alice: secret\n", 2, ["basic_auth_users.alice", "not a bcrypt hash"]),
    ("tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", 2, ["cipher_suites", "not supported"]),
    ("tls_server_config:\n  min_version: TLS14\n", 2, ["min_version", "TLS14"]),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", 3, ["X-Frame-Options", "deny"]),
    ("http_server_config:\n  headers:\n    Set-Cookie: a=b\n", 3, ["'Set-Cookie' cannot be set"]),
    ("rate_limit:\n  interval: 1s\n", 1, ["rate_limit", "not supported"]),
    ("- a\n- b\n", 1, ["a web config is a mapping"]),
])
def test_a_bad_web_config_names_the_file_line_and_key(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_web_config(path)
    assert e.value.file == path
    assert e.value.line == line, str(e.value)
    for w in words:
        assert w in e.value.reason, e.value.reason


def test_client_ca_needs_a_client_auth_type(tmp_path):
    ca, crt, key = make_certs(tmp_path) if binary("openssl") else pytest.skip("openssl not on PATH")
    path = write(tmp_path, f"tls_server_config:\n  cert_file: {crt}\n  key_file: {key}\n  client_ca_file: {ca}\n")
    with pytest.raises(ConfigError, match="client_ca_file is set without a client_auth_type"):
        load_web_config(path)


def test_relative_paths_are_read_from_the_config_files_directory(tmp_path):
    if not binary("openssl"):
        pytest.skip("openssl not on PATH")
    make_certs(tmp_path)
    path = write(tmp_path, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    cwd = os.getcwd()
    os.chdir("/")
    try:
        assert load_web_config(path).ssl_context is not None
    finally:
        os.chdir(cwd)


def test_an_empty_file_means_plain_http_without_auth(tmp_path):
    cfg = load_web_config(write(tmp_path, ""))
    assert cfg.ssl_context is None and not cfg.users


def test_a_bad_web_config_stops_runwatch_with_the_file_and_line(runwatch_proc, tmp_path):
    path = write(tmp_path, "tls_server_config:\n  cert_file: x\n")
    rw = runwatch_proc("demo", "--web.config.file", path)
    assert rw.p.wait(30) == 1
    assert f"runwatch: {path}:1: tls_server_config: missing key_file" in rw.stderr_text()


def test_basic_auth_users_without_bcrypt_installed_is_a_clear_error(runwatch_proc, tmp_path):
    blocker = tmp_path / "no-bcrypt"
    blocker.mkdir()
    (blocker / "bcrypt.py").write_text("raise ImportError('bcrypt is not installed here')\n")
    path = write(tmp_path, f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]))
    rw = runwatch_proc("demo", "--web.config.file", path, env=env)
    assert rw.p.wait(30) == 1
    err = rw.stderr_text()
    assert f"{path}:1: basic_auth_users needs the bcrypt package" in err and "runwatch[auth]" in err


# ---------------------------------------------------------------- live: TLS and basic auth

@pytest.fixture
def tls_runwatch(runwatch_proc, tmp_path):
    if not binary("openssl"):
        pytest.skip("openssl not on PATH")
    ca, crt, key = make_certs(tmp_path)
    path = write(tmp_path, f"tls_server_config:\n  cert_file: {crt}\n  key_file: {key}\n"
                           f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    rw = runwatch_proc("demo", "--speed", "10", "--events", "--web.config.file", path,
                       env=dict(os.environ, RUNWATCH_TOKEN=TOKEN))
    rw.url = f"https://127.0.0.1:{rw.port}"
    rw.ca = ca
    wait_for(lambda: requests.get(rw.url + "/healthz", verify=ca, auth=("prometheus", PASSWORD), timeout=5).ok,
             30, what="runwatch over TLS")
    return rw


@pytest.mark.stack("openssl")
def test_tls_and_basic_auth_with_a_real_client(tls_runwatch):
    rw, ca = tls_runwatch, tls_runwatch.ca
    ok = requests.get(rw.url + "/metrics", verify=ca, auth=("prometheus", PASSWORD), timeout=10)
    assert ok.status_code == 200 and "runwatch_run_info" in ok.text
    for auth in (None, ("prometheus", "wrong"), ("nobody", PASSWORD)):
        for path in ("/metrics", "/healthz", "/api/runs", "/"):
            r = requests.get(rw.url + path, verify=ca, auth=auth, timeout=10)
            assert r.status_code == 401, (auth, path)
            assert r.headers["WWW-Authenticate"].startswith("Basic ")
    # writes are authenticated by the API token, not a password
    r = requests.post(rw.url + "/api/events", verify=ca, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"},
                      json={"run_id": "tls-run", "type": "phase", "phase": "train"})
    assert r.status_code == 200, r.text
    r = requests.post(rw.url + "/api/events", verify=ca, timeout=10, headers={"Authorization": "Bearer wrong"},
                      json={"run_id": "tls-run", "type": "phase", "phase": "train"})
    assert r.status_code == 401
    # plain HTTP to the TLS port gets no answer, and is counted
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{rw.port}/metrics", timeout=10)
    text = requests.get(rw.url + "/metrics", verify=ca, auth=("prometheus", PASSWORD), timeout=10).text
    assert sample(text, "runwatch_http_refused_total", reason="auth") >= 12
    assert sample(text, "runwatch_http_dropped_total", reason="tls_handshake") >= 1
    assert "without TLS" not in rw.stderr_text()


@pytest.mark.stack("prometheus", "openssl")
def test_a_real_prometheus_scrapes_over_tls_with_basic_auth(tls_runwatch, tmp_path):
    rw = tls_runwatch
    prom = binary("prometheus")
    port = free_port()
    job = lambda name, password: {  # noqa: E731
        "job_name": name, "scheme": "https", "scrape_interval": "1s", "scrape_timeout": "900ms",
        "tls_config": {"ca_file": rw.ca}, "basic_auth": {"username": "prometheus", "password": password},
        "static_configs": [{"targets": [f"127.0.0.1:{rw.port}"]}]}
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"},
                                   "scrape_configs": [job("good", PASSWORD), job("bad", "wrong password")]}))
    proc = start_logged([prom, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'data'}",
                         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], tmp_path / "prometheus.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/-/ready", 60, proc)

        def targets():
            data = requests.get(base + "/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
            by_job = {t["labels"]["job"]: t for t in data}
            return by_job if {"good", "bad"} <= by_job.keys() and by_job["good"]["health"] == "up" and \
                by_job["bad"]["health"] == "down" else None
        by_job = wait_for(targets, 90, interval=0.5, what="the good target up and the bad one down")
        assert "401" in by_job["bad"]["lastError"], by_job["bad"]["lastError"]

        def query(expr):
            return requests.get(base + "/api/v1/query", params={"query": expr}, timeout=10).json()["data"]["result"]
        runs = wait_for(lambda: query('count(runwatch_run_info{job="good"})'), 60, what="runwatch series in Prometheus")
        assert float(runs[0]["value"][1]) >= 5          # the demo's runs, scraped over TLS with basic auth
        assert not query('runwatch_run_info{job="bad"}')
    finally:
        stop_group(proc)
    assert requests.get(rw.url + "/healthz", verify=rw.ca, auth=("prometheus", PASSWORD), timeout=10).ok
