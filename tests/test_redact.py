"""Redaction: secrets never leave the process; ordinary lines pass byte for byte."""
from __future__ import annotations

import glob
import os

import pytest

from runwatch.parse.redact import REDACTED, Redactor, RedactState, default_redactor
from runwatch.model.runs import Ingest, Registry, RunSpec
from runwatch.parse.packs import Matcher, load_packs

from support.loki_double import LokiServer
from support.paths import TESTS

# (line, secrets that must not survive)
SECRET_LINES = [
    # az ml job stream: log URLs with a SAS
    ("Streaming azureml-logs/70_driver_log.txt https://mlstore.blob.core.windows.net/azureml/ExperimentRun/"
     "dcid.job-7/azureml-logs/70_driver_log.txt?sv=2019-07-07&sr=b&sig=Tz7bq%2FVtXq8kz3%2B1aBcDeFgH%3D"
     "&skoid=0f1e&sktid=72f9&skt=2024-05-01T10%3A00%3A00Z&ske=2024-05-02T10%3A00%3A00Z&sks=b&skv=2019-07-07"
     "&st=2024-05-01T10%3A00%3A00Z&se=2024-05-01T18%3A10%3A00Z&sp=r",
     ["Tz7bq%2FVtXq8kz3%2B1aBcDeFgH%3D"]),
    ("Downloading https://acct.blob.core.windows.net/c/model.pt?se=2024-06-01&sp=r&sv=2022-11-02&sr=b"
     "&sig=AbCdEf0123456789%2BAbCdEf%3D", ["AbCdEf0123456789%2BAbCdEf%3D"]),
    ("DefaultEndpointsProtocol=https;AccountName=mystorage;AccountKey=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFi"
     "Y2RlZmdoaWprbG1ub3A=;EndpointSuffix=core.windows.net",
     ["Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3A="]),
    ("AZURE_STORAGE_CONNECTION_STRING=BlobEndpoint=https://x.blob.core.windows.net/;SharedAccessSignature="
     "sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se=2025-01-01T00:00:00Z&spr=https&sig=QwErTy0123456789%2BzXc%3D",
     ["QwErTy0123456789%2BzXc%3D", "srt=sco&sp=rwdlac"]),
    ("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;"
     "SharedAccessKey=q1w2e3r4t5y6u7i8o9p0AbCdEfGhIjKlMnOpQrStUvW=", ["q1w2e3r4t5y6u7i8o9p0AbCdEfGhIjKlMnOpQrStUvW="]),
    ("> Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJtYW5hZ2VtZW50In0.c2lnbmF0dXJl",
     ["eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9"]),
    ("curl -s -H 'Authorization: token ghp_abcdefghijklmnopqrstuvwxyz0123456789' https://api.github.com",
     ["ghp_abcdefghijklmnopqrstuvwxyz0123456789"]),
    ("headers={'authorization': 'Basic dXNlcjpodW50ZXIy', 'accept': '*/*'}", ["dXNlcjpodW50ZXIy"]),
    ("token_type=Bearer access: Bearer abcdefghijklmnopqrstuvwxyz0123456789", ["abcdefghijklmnopqrstuvwxyz0123456789"]),
    ("wandb: WANDB_API_KEY=0123456789abcdef0123456789abcdef01234567", ["0123456789abcdef0123456789abcdef01234567"]),
    ("$ wandb login --relogin 89abcdef0123456789abcdef0123456789abcdef", ["89abcdef0123456789abcdef0123456789abcdef"]),
    ("export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", ["AKIAIOSFODNN7EXAMPLE"]),
    ("export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]),
    ('{"Credentials": {"AccessKeyId": "ASIAY34FZKBOKMUTVV7A", "SecretAccessKey": "sEcReT/abc+123xyz", '
     '"SessionToken": "FwoGZXIvYXdzEBYaDHsecretsession=="}}',
     ["ASIAY34FZKBOKMUTVV7A", "sEcReT/abc+123xyz", "FwoGZXIvYXdzEBYaDHsecretsession=="]),
    ("connecting with password=hunter2 user=bob", ["hunter2"]),
    ('db config: {"user": "app", "password": "correct horse battery"}', ["correct horse battery"]),
    ("run.py --api-key sk-live-0123456789 --epochs 3", ["sk-live-0123456789"]),
    ("config: {'api_key': 'sk-abc123def456', 'model': 'gpt'}", ["sk-abc123def456"]),
    ("GITHUB_TOKEN=ghp_zyxwvutsrqponmlkjihgfedcba9876543210", ["ghp_zyxwvutsrqponmlkjihgfedcba9876543210"]),
    ("client_secret: 8Q~abcDEF.ghiJKL-mno", ["8Q~abcDEF.ghiJKL-mno"]),
    ("X-Api-Key: abcdef123456abcdef", ["abcdef123456abcdef"]),
    ("secret=s3cr3t-value&next=1", ["s3cr3t-value"]),
    ('{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC'
     '\\n-----END PRIVATE KEY-----\\n", "client_email": "x@y"}', ["MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"]),
]

PEM = (b"-----BEGIN RSA PRIVATE KEY-----\n"
       b"MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi8Qa1b2c3d4e5f6g7h8i9j0k1l2m3\n"
       b"n4o5p6q7r8s9t0u1v2w3x4y5z6A7B8C9D0E1F2G3H4I5J6K7L8M9N0O1P2Q3R4S5T6\n"
       b"-----END RSA PRIVATE KEY-----\n")

ORDINARY = [
    "2024-05-01 12:00:01,123 INFO runner: Task 3/10 step 12 action=click(120, 340) reward=0.0",
    "generation: max_tokens=512 prompt_tokens: 42 completion_tokens: 17 tokens/s: 33.1",
    "KeyError: 'loss'",
    "Using bearer authentication for the registry",
    "tokenizer loaded from cache; vocab keys: 50257",
    "Step 5/12 : RUN pip install --no-cache-dir -r requirements.txt",
    "#5 [2/7] RUN apt-get update && apt-get install -y curl",
    "signature verified for package secretstorage-3.3.3",
    "monkey patching keyboard handler; hotkey=ctrl+c",
    "Enter password:",
    "secret santa draw complete",
    "passwords.txt not found, skipping",
    "wandb: Syncing run fearless-sun-12; wandb login not needed",
    "Trial 4 finished with value: 0.8123 and parameters: {'lr': 0.001}. Best is trial 2 with value: 0.85.",
    "train:  37%|███▋      | 370/1000 [01:02<01:45,  5.98it/s, loss=0.412]",
    "ünïcödé line with a key word: schlüssel",
]


def test_each_secret_is_gone_and_the_line_keeps_its_shape():
    r = Redactor()
    for line, secrets in SECRET_LINES:
        out = r.block(line.encode() + b"\n", RedactState()).decode()
        for s in secrets:
            assert s not in out, (line, out)
        assert REDACTED.decode() in out
        assert out.endswith("\n") and out.count("\n") == 1


def test_ordinary_lines_are_unchanged_byte_for_byte():
    r = Redactor()
    block = "".join(x + "\n" for x in ORDINARY).encode()
    assert r.block(block, RedactState()) == block
    for path in glob.glob(os.path.join(TESTS, "golden", "*.log")):
        with open(path, "rb") as f:
            data = f.read()
        if not data.endswith(b"\n"):
            data += b"\n"
        assert r.block(data, RedactState()) == data, path


def test_a_block_mixing_both():
    r = Redactor()
    lines = []
    for i, (line, _) in enumerate(SECRET_LINES):
        lines += [ORDINARY[i % len(ORDINARY)], line]
    block = "".join(x + "\n" for x in lines).encode()
    out = r.block(block, RedactState())
    got = out.decode().split("\n")[:-1]
    assert len(got) == len(lines)
    for i in range(0, len(lines), 2):
        assert got[i] == lines[i]
    for _, secrets in SECRET_LINES:
        for s in secrets:
            assert s not in out.decode()


def test_block_without_trigger_is_returned_as_is():
    r = default_redactor()
    block = b"plain line\n" * 1000
    assert r.block(block) is block


def test_private_key_block_spanning_blocks():
    r = Redactor()
    st = RedactState()
    first, second = PEM[:90], PEM[90:]
    cut = first.rfind(b"\n") + 1
    out = r.block(b"loading key\n" + first[:cut], st) + r.block(first[cut:] + second + b"after\n", st)
    text = out.decode()
    assert "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi8" not in text
    assert "n4o5p6q7r8s9t0u1v2w3x4y5z6A7B8C9D0E1F2G3" not in text
    assert text.splitlines() == ["loading key", "-----BEGIN RSA PRIVATE KEY-----", "<redacted>", "<redacted>",
                                 "-----END RSA PRIVATE KEY-----", "after"]
    assert not st.in_pem


def test_user_patterns_whole_match_or_group_one():
    r = Redactor([r"internal-[0-9a-f]{8}", r"session=(\w+)"])
    out = r.block(b"id internal-deadbeef here\nsession=abc123 ok\nplain\n").decode()
    assert out == "id <redacted> here\nsession=<redacted> ok\nplain\n"
    with pytest.raises(ValueError):
        Redactor(["(unclosed"])


def test_text_helper():
    assert default_redactor().text("url?sig=abc&x=1") == "url?sig=<redacted>&x=1"


def test_ingest_redacts_before_recent_lines_and_packs():
    reg = Registry()
    run = reg.add(RunSpec(id="r"))
    shipped = []
    ing = Ingest(reg, run, Matcher(load_packs(["python"], [])), on_block=lambda r, b, t: shipped.append(b))
    ing.data(0, b"start\nAccountKey=SECRETKEY123;x\n" + PEM[:70])
    ing.data(0, PEM[70:] + b"done\n")
    ing.end(0)
    recent = "\n".join(reg.recent_lines(run))
    allshipped = b"".join(shipped).decode()
    for text in (recent, allshipped):
        assert "SECRETKEY123" not in text and "MIIEpAIBAAKCAQEA" not in text and "n4o5p6q7" not in text
        assert "done" in text and "AccountKey=<redacted>" in text
    off = Ingest(reg, reg.add(RunSpec(id="raw")), Matcher([]), redactor=False)
    off.data(0, b"AccountKey=visible;\n")
    assert "AccountKey=visible;" in reg.recent_lines(reg.runs["raw"])


def test_shipped_corpus_has_no_secret_at_the_server(tmp_path):
    from runwatch.export.loki import LokiConfig, Shipper

    srv = LokiServer()
    try:
        sh = Shipper(LokiConfig(url=srv.url, spool_dir=str(tmp_path), batch_wait=0.05)).start()
        reg = Registry()
        run = reg.add(RunSpec(id="corpus", kind="eval", source="command"))
        ing = Ingest(reg, run, Matcher([]), on_block=sh.ship)
        corpus = []
        for line, _ in SECRET_LINES:
            corpus.append(line)
        corpus += ORDINARY
        payload = "".join(x + "\n" for x in corpus).encode() + PEM
        for i in range(0, len(payload), 97):          # odd chunking: lines split across reads
            ing.data(0, payload[i:i + 97])
        ing.end(0)
        sh.close()
        got = srv.lines("corpus")
        assert len(got) == len(corpus) + 4
        everything = "\n".join(got)
        for _, secrets in SECRET_LINES:
            for s in secrets:
                assert s not in everything
        assert "MIIEpAIBAAKCAQEA" not in everything
        for x in ORDINARY:
            assert x in got
    finally:
        srv.stop()


def test_an_ordinary_block_is_returned_untouched():
    """What keeps redaction cheap on the line path (bench/bench_loki.py prints the cost):
    a block without a trigger word is neither copied nor run through a regex."""
    line = b"2024-05-01 12:00:01,123 INFO runner: Task 3/10 step 12 action=click(120, 340) reward=0.0\n"
    block = line * ((1 << 20) // len(line))
    assert default_redactor().block(block) is block


def test_camel_and_upper_case_key_names_are_found_by_the_fast_trigger_search():
    """Triggers are searched case-sensitively (memchr); these spellings must still be caught."""
    from runwatch.parse.redact import Redactor
    r = Redactor()
    cases = {
        '{"apiKey": "sk-abc123xyz"}': '{"apiKey": "<redacted>"}',
        "accessToken=eyJhbGciOi.abc.def": "accessToken=<redacted>",
        "clientSecret: s3cr3tvalue": "clientSecret: <redacted>",
        "userPassword=hunter2": "userPassword=<redacted>",
        "X-API-KEY: abcd1234": "X-API-KEY: <redacted>",
        "SAS ?sig=AbC%2Bx%3D&sv=1": "SAS ?sig=<redacted>&sv=1",
    }
    for line, want in cases.items():
        assert r.text(line) == want


def test_well_known_key_shapes_without_a_key_name():
    from runwatch.parse.redact import Redactor
    r = Redactor()
    assert r.text("GET /k?X-Amz-Credential=AKI&X-Amz-Signature=abcdef0123 200") == \
        "GET /k?X-Amz-Credential=AKI&X-Amz-Signature=<redacted> 200"
    assert r.text("using sk-proj-abcdefghijklmnopqrstuvwxyz123") == "using sk-proj-<redacted>"
    assert r.text("GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123") == "GITHUB_TOKEN=<redacted>"
    assert r.text("token ok; clone https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/x") == \
        "token ok; clone https://ghp_<redacted>@github.com/x"
    assert r.text("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fw") == "jwt <redacted>"
    for ordinary in ("pip install scikit-learn sk-learn", "risk-free", "task-7 done"):
        assert r.text(ordinary) == ordinary
