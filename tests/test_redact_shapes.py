"""Redaction covers the shapes users actually paste; an ordinary line comes back unchanged."""
from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runwatch.parse.redact import REDACTED, RedactState, Redactor, default_redactor

# (line, the secret that must go, text around it that must stay)
SHAPES = [
    ("connecting to https://admin:hunter2pass@db.example.com:5432/app now", "hunter2pass",
     ["https://admin:", "@db.example.com:5432/app now"]),
    ("DATABASE_URL postgres://app:S3cr3t!x@10.0.0.5/prod", "S3cr3t!x", ["postgres://app:", "@10.0.0.5/prod"]),
    ("cache at redis://:r3d1spw@cache:6379/0 ready", "r3d1spw", ["redis://:", "@cache:6379/0 ready"]),
    ("PassWord=Tr0ub4dor&3 user=bob", "Tr0ub4dor", ["PassWord=", "user=bob"]),
    ("SeCrEt=abcdef0123 next", "abcdef0123", ["SeCrEt=", " next"]),
    ("ssh-keygen: passphrase: correct-horse ok", "correct-horse", ["passphrase: ", " ok"]),
    ("odbc: Server=db;Uid=sa;Pwd=Xy9secret;", "Xy9secret", ["Server=db;Uid=sa;Pwd=", ";"]),
    ("+ mysql -u root -pMyS3cretPw -h db shop", "MyS3cretPw", ["mysql -u root -p", " -h db shop"]),
    ("+ docker login -u ci -p dckr_pat_a1b2c3d4e5 registry.example.com", "dckr_pat_a1b2c3d4e5",
     ["docker login -u ci -p ", " registry.example.com"]),
    ('payload="{\\"user\\": \\"bob\\", \\"password\\": \\"esc4ped\\"}" sent', "esc4ped",
     ['\\"user\\": \\"bob\\"', '\\"password\\": \\"', '\\"}" sent']),
    ("\x1b[33mpassword\x1b[0m: c0l0ured-secret (from env)", "c0l0ured-secret", ["\x1b[33mpassword", " (from env)"]),
    ("slack: posting with xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp", "1234567890-0987654321-AbCdEfGhIjKlMnOp",
     ["slack: posting with xoxb-"]),
    ("stripe key sk_live_4eC39HqLyjWDarjtT1zdp7dc loaded", "4eC39HqLyjWDarjtT1zdp7dc", ["stripe key sk_live_", " loaded"]),
    ("maps client AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q ok", "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
     ["maps client AIza", " ok"]),
    ("git clone https://oauth2:glpat-xYz123AbC456dEf789gHi@gitlab.com/g/r.git", "xYz123AbC456dEf789gHi",
     ["git clone https://oauth2:", "@gitlab.com/g/r.git"]),
    ("using gitlab glpat-xYz123AbC456dEf789gHi for the registry", "xYz123AbC456dEf789gHi",
     ["using gitlab glpat-", " for the registry"]),
    ("huggingface-cli login hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567 done", "AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
     ["huggingface-cli login hf_", " done"]),
    ("< Set-Cookie: session=9f8e7d6c5b4a3; Path=/; HttpOnly", "9f8e7d6c5b4a3", ["< Set-Cookie: session=", "; Path=/; HttpOnly"]),
    ("proxy sent Basic dXNlcjpodW50ZXIy to upstream", "dXNlcjpodW50ZXIy", ["proxy sent Basic ", " to upstream"]),
    ("cloning with ghp_abcdefghijklmnopqrstuvwxyz0123456789 now", "abcdefghijklmnopqrstuvwxyz0123456789",
     ["cloning with ghp_", " now"]),
    ("pat github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz used", "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
     ["pat github_pat_", " used"]),
    ("aws configure: AKIAIOSFODNN7EXAMPLE / region us-east-1", "AKIAIOSFODNN7EXAMPLE", ["aws configure: ", " / region"]),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     ["aws_secret_access_key = "]),
    ("id eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlMTIz expired", "eyJzdWIiOiIxMjM0In0",
     ["id ", " expired"]),
    ("GET https://acct.blob.core.windows.net/c/f?sv=2022-11-02&sr=b&sig=AbC%2Bx%3Dyz 200", "AbC%2Bx%3Dyz",
     ["&sr=b&sig=", " 200"]),
    ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Zm9vYmFyYmF6==;EndpointSuffix=core.windows.net",
     "Zm9vYmFyYmF6==", ["AccountName=acct;AccountKey=", ";EndpointSuffix=core.windows.net"]),
]

BLOCKS = [
    # PGP and OpenSSH private keys: the body goes, the armour lines stay
    (b"-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\nlQOYBF1pgpbodyAAAA\n=ab12\n"
     b"-----END PGP PRIVATE KEY BLOCK-----\nafter\n", [b"lQOYBF1pgpbodyAAAA", b"=ab12"],
     [b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n", b"-----END PGP PRIVATE KEY BLOCK-----\nafter\n"]),
    (b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\n-----END OPENSSH PRIVATE KEY-----\n",
     [b"b3BlbnNzaC1rZXktdjEAAAAABG5vbmU"], [b"-----END OPENSSH PRIVATE KEY-----\n"]),
    (b"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBecbody\n-----END EC PRIVATE KEY-----\n", [b"MHcCAQEEIBecbody"], []),
]


@pytest.mark.parametrize("line,secret,kept", SHAPES, ids=[s[1][:20] for s in SHAPES])
def test_each_shape_is_redacted_and_the_rest_of_the_line_kept(line, secret, kept):
    out = Redactor().block(line.encode() + b"\n", RedactState()).decode()
    assert secret not in out, out
    assert REDACTED.decode() in out, out
    for k in kept:
        assert k in out, (k, out)
    assert out.endswith("\n") and out.count("\n") == 1


@pytest.mark.parametrize("block,secrets,kept", BLOCKS)
def test_private_key_blocks_of_every_armour(block, secrets, kept):
    out = Redactor().block(block, RedactState())
    for s in secrets:
        assert s not in out, out
    for k in kept:
        assert k in out, out
    assert out.count(b"\n") == block.count(b"\n")


def test_the_text_helper_redacts_the_same_shapes():
    red = default_redactor()
    for line, secret, _ in SHAPES:
        assert secret not in red.text(line)


ORDINARY_LINES = [
    "Basic configuration loaded; key frames: 12",
    "mysql -u app shop < schema.sql",
    "docker login registry.example.com (credentials from the helper)",
    "see https://example.com/docs/a@b for details",
    "user bob@example.com logged in",
    "token count 512, passes 3, keyword args ok",
    "Cookie banner dismissed",
    "hf_hub: downloading config.json",
    "Password policy: at least 12 characters",
    "xoxo gossip",
]


def test_ordinary_lines_near_the_new_shapes_stay_as_they_are():
    red = Redactor()
    for line in ORDINARY_LINES:
        b = line.encode() + b"\n"
        assert red.block(b, RedactState()) == b, line


# An ordinary line: words, numbers and punctuation of log output, with no name
# of a secret and no token shape in it. Every such line must come back as it was.
_SAFE_WORDS = ["epoch", "loss", "step", "INFO", "WARNING", "ERROR", "train", "eval", "reward", "done",
               "Task", "notepad_3", "SUCCESS", "lr", "batch", "GPU", "mem", "it/s", "Trial", "score",
               "download", "https://example.com/a/b.json", "user=bob", "count:", "x=1,y=2", "[00:12<00:15]",
               "45%|####", "{\"a\": 1}", "'q'", "path=/tmp/run-1", "k=v;", "-v", "--epochs", "3", "0.125"]
_SAFE_CHARS = string.ascii_letters + string.digits + " .,:;=-_/()[]{}%|#'\"<>+*"


def _looks_like_no_secret(line: str) -> bool:
    low = line.lower()
    return not any(w in low for w in ("key", "token", "secret", "passw", "pwd", "passphrase", "bearer", "basic",
                                      "authorization", "cookie", "wandb", "mysql", "login")) and \
        not any(t in line for t in ("AKIA", "ASIA", "sig=", "Signature=", "sk-", "eyJ", "@", "gh", "glpat-", "xox",
                                    "k_live_", "k_test_", "AIza", "hf_", "-----BEGIN"))


ordinary_line = st.one_of(
    st.lists(st.sampled_from(_SAFE_WORDS), min_size=1, max_size=20).map(" ".join),
    st.text(alphabet=_SAFE_CHARS, min_size=0, max_size=200),
).filter(_looks_like_no_secret)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ordinary_line)
def test_property_an_ordinary_line_comes_back_unchanged(line):
    red = default_redactor()
    b = line.encode() + b"\n"
    assert red.block(b, RedactState()) == b
    assert red.text(line) == line


@settings(max_examples=200, deadline=None)
@given(ordinary_line, st.sampled_from(SHAPES))
def test_property_a_secret_inside_ordinary_text_is_gone_and_the_text_stays(text, shape):
    line, secret, _ = shape
    full = f"{text} | {line}"
    out = default_redactor().text(full)
    assert secret not in out
    assert out.startswith(f"{text} | ") or text.strip() == ""


def test_mixed_case_names_are_found_when_their_letter_is_common_in_the_block():
    """The folded trigger search gives up hunting a letter after too many false hits and
    lowers the block instead: the names must still be found."""
    noise = b"kayak kiosk kk kiwi Kurt kept the keel\n" * 3000
    block = noise + b"SeCrEt=abc123\n" + noise + b"x ApIkEy: zzz999\n"
    out = Redactor().block(block, RedactState())
    assert b"abc123" not in out and b"zzz999" not in out
    assert out.count(b"\n") == block.count(b"\n") and out.startswith(noise)
