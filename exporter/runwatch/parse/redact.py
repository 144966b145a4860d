"""Secrets out of log lines, before a line leaves the process.

Every line runwatch reads goes through here before it reaches Loki, the status
page's recent lines or any API: Azure SAS signatures (`sig=`), storage account
keys and connection strings, bearer tokens and `Authorization:` headers, W&B
API keys, AWS access keys and secrets, `password=` / `token=` / `secret=` /
`api_key=` pairs (also JSON style `"password": "…"`), and the body of
`-----BEGIN … PRIVATE KEY-----` blocks. Users add their own patterns
(`redact:` in the config, `--redact` on the command line).

The line path works on *blocks* (bytes of complete lines, each ending in
b"\\n"), so this does too. A cheap prefilter runs first: the block is lowered
once and searched for a handful of trigger substrings with `bytes.find`; the
regular expressions run only on the lines that hold a trigger. A block without
a trigger (nearly all of them) comes back as the very same object.

The secret is replaced by `<redacted>`; what names it (`sig=`, `AccountKey=`,
`Authorization: Bearer`) stays, so a reader still sees what was there.
"""
from __future__ import annotations

import re
from typing import Iterable

from .textsearch import KeywordSet

REDACTED = b"<redacted>"

# A line is examined only if it holds one of these words, written in lower
# case, Capitalised or UPPER case (x-api-key, X-Api-Key, X-API-KEY, apiKey).
# Each variant is found with a memchr of its rarest byte (textsearch.py), so a
# block without any costs a few C-level scans and no per-line Python work.
TRIGGER_WORDS = ("key", "token", "secret", "passw", "bearer", "authorization", "wandb")
# Case-sensitive by definition: AWS key ids are upper case; a SAS signature is
# the query parameter `sig=` (after ? or &, as in every SAS URL and
# SharedAccessSignature=sv=…&sig=…).
TRIGGERS_EXACT = (b"AKIA", b"ASIA", b"&sig=", b"?sig=",
                  b"Signature=",        # presigned S3 / GCS URLs: X-Amz-Signature=, X-Goog-Signature=
                  b"sk-",               # OpenAI-style API keys
                  b"eyJ")               # JWTs: base64 of '{"'
# Not triggers, because every byte of them is common in logs and each would cost
# a full pass: GitHub tokens (ghp_…), caught when a key name precedes them
# (GITHUB_TOKEN=ghp_…) or another trigger is on the line. Add a `redact:`
# pattern to catch them anywhere.



def _trigger_variants() -> list[bytes]:
    words = {v.encode() for w in TRIGGER_WORDS for v in (w, w.capitalize(), w.upper())}
    # The bearer scheme is written "Bearer" (RFC 6750); a lower-case one comes after an
    # "authorization" header name, which is a trigger of its own.
    words.discard(b"bearer")
    return sorted(words | set(TRIGGERS_EXACT))


_VALUE = rb"""("[^"\n]*"|'[^'\n]*'|[^\s"',;&]+)"""
_NAMES = (rb"(?:password|passwd|secret|token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|"
          rb"private[_-]?key|account[_-]?key|client[_-]?secret|auth[_-]?token|access[_-]?token|"
          rb"refresh[_-]?token|sas[_-]?token)")


def _keep1(m: re.Match) -> bytes:
    return m.group(1) + REDACTED


def _keep12(m: re.Match) -> bytes:
    return m.group(1) + (m.group(2) or b"") + REDACTED


def _keyvalue(m: re.Match) -> bytes:
    v = m.group(3)
    if v[:1] in (b'"', b"'"):
        if len(v) <= 2:                 # "" : nothing to hide
            return m.group(0)
        return m.group(1) + m.group(2) + v[:1] + REDACTED + v[:1]
    return m.group(1) + m.group(2) + REDACTED


def _pem_inline(m: re.Match) -> bytes:
    if not m.group(2).strip():          # the BEGIN line of a multi-line block: the body follows
        return m.group(0)
    return m.group(1) + REDACTED + m.group(3)


# (pattern, replacement); applied in this order to each triggered line.
BUILTIN: list[tuple[re.Pattern, object]] = [
    # Connection strings: AccountKey=…; SharedAccessKey=…; SharedAccessSignature=sv=…&sig=…
    (re.compile(rb"(?i)(\b(?:AccountKey|SharedAccessKey|SharedAccessSignature)\s*=\s*)[^;\s\"']+"), _keep1),
    # Azure SAS: …?sv=2021-08-06&se=…&sig=AbC%2Bx%3D
    (re.compile(rb"(?i)(\bsig=)[^&\s\"'<>;]+"), _keep1),
    # Authorization: Bearer x / Basic x / SharedKey acct:x / token x (headers, curl -H, dict dumps)
    (re.compile(rb"(?i)(\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
                rb"((?:basic|bearer|token|digest|sharedkey|sas|negotiate|ntlm|apikey)\s+)?[^\s\"',]+"),
     _keep12),
    # A bare bearer token (long enough to be one, so "bearer authentication" stays)
    (re.compile(rb"(?i)(\bbearer\s+)[A-Za-z0-9\-._~+/]{20,}=*"), _keep1),
    # W&B: `wandb login <key>` (WANDB_API_KEY=… is a key=value pair below)
    (re.compile(rb"(?i)(\bwandb\s+login\b[^\n]*?\s)[0-9A-Za-z_-]{40,}"), _keep1),
    # AWS access key ids
    (re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    # Presigned S3 / GCS URLs
    (re.compile(rb"(?i)([?&]X-(?:Amz|Goog)-Signature=)[^&\s\"'<>]+"), _keep1),
    # Well-known key shapes: OpenAI sk-…, GitHub ghp_… / github_pat_…, JWTs (three base64url parts)
    (re.compile(rb"\b(sk-(?:proj-)?)[A-Za-z0-9_-]{20,}"), _keep1),
    (re.compile(rb"\b(ghp_|github_pat_)[A-Za-z0-9_]{20,}"), _keep1),
    (re.compile(rb"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), REDACTED),
    # One-line private keys (JSON service-account files, escaped newlines)
    (re.compile(rb"(-----BEGIN[A-Z0-9 ]* PRIVATE KEY-----)(.*?)(-----END[A-Z0-9 ]* PRIVATE KEY-----|$)"),
     _pem_inline),
    # password=… token: … "secret": "…" X-Api-Key: … aws_secret_access_key = … --password=…
    (re.compile(rb"(?i)(?<![\w-])([\w.-]*?" + _NAMES + rb")([\"']?\s*[:=]\s*)" + _VALUE), _keyvalue),
    # --password hunter2, -token abc (a flag, a space, a value)
    (re.compile(rb"(?i)(?<![\w-])(--?[\w-]*?" + _NAMES + rb")(\s+)([^\s\"'-][^\s\"']*)"), _keyvalue),
]

_PEM_BEGIN = re.compile(rb"-----BEGIN[A-Z0-9 ]* PRIVATE KEY-----")
_PEM_END = b"-----END"


class Redactor:
    """Compiled redaction rules (shareable) with per-stream state for PEM blocks.

    `block(block, state)` redacts a block of complete lines; `state` is a
    `RedactState` kept per stream (a private key block spans lines and may
    span blocks). `text(s)` redacts a str (one or more lines) statelessly.
    """

    def __init__(self, extra: Iterable[str | bytes] = (), *, builtin: bool = True):
        self.rules = list(BUILTIN) if builtin else []
        self.user: list[re.Pattern] = []
        for p in extra:
            try:
                rx = re.compile(p.encode("utf-8") if isinstance(p, str) else p)
            except re.error as e:
                raise ValueError(f"redact pattern {p!r}: {e}") from None
            self.user.append(rx)
            self.rules.append((rx, _user_sub))
        self.triggers = KeywordSet(_trigger_variants() if builtin else [])

    # ---------------------------------------------------------------- blocks

    def block(self, block: bytes, state: "RedactState | None" = None) -> bytes:
        if state is not None and state.in_pem:
            head, block = self._pem_body(block, 0, state)
            if not block:
                return head
            return head + self.block(block, state)
        spans: list[int] = []
        self.triggers.find_lines(block, spans)
        for rx in self.user:
            for m in rx.finditer(block):
                spans.append(block.rfind(b"\n", 0, m.start()) + 1)
                end = m.end()
                j = block.find(b"\n", m.start(), end)
                while 0 <= j < end - 1:          # a match across lines: mark each line
                    spans.append(j + 1)
                    j = block.find(b"\n", j + 1, end)
        if not spans:
            return block
        return self._rewrite(block, sorted(set(spans)), state)

    def _rewrite(self, block: bytes, starts: list[int], state) -> bytes:
        out = []
        pos = 0
        for s in starts:
            if s < pos:             # inside a PEM body already redacted
                continue
            e = block.find(b"\n", s) + 1 or len(block)
            out.append(block[pos:s])
            line = block[s:e]
            new = self.line(line)
            out.append(new)
            pos = e
            m = _PEM_BEGIN.search(line)
            if m is not None and _PEM_END not in line[m.end():]:
                st = state if state is not None else RedactState()
                st.in_pem = True
                head, rest_start = self._pem_body(block, e, st, offset_only=True)
                out.append(head)
                pos = rest_start
        out.append(block[pos:])
        return b"".join(out)

    def _pem_body(self, block: bytes, start: int, state, offset_only: bool = False):
        """Redact whole lines from `start` up to the END line (kept); returns
        (redacted part, rest) or with offset_only (redacted part, offset of rest)."""
        out = []
        pos = start
        n = len(block)
        while pos < n:
            e = block.find(b"\n", pos) + 1 or n
            line = block[pos:e]
            if _PEM_END in line:
                state.in_pem = False
                out.append(line)
                pos = e
                break
            out.append(REDACTED + (b"\n" if line.endswith(b"\n") else b""))
            pos = e
        head = b"".join(out)
        return (head, pos) if offset_only else (head, block[pos:])

    # ----------------------------------------------------------------- lines

    def line(self, line: bytes) -> bytes:
        for rx, repl in self.rules:
            line = rx.sub(repl, line)
        return line

    def text(self, s: str) -> str:
        """Redact a str (status page, APIs); multi-line PEM bodies included."""
        b = s.encode("utf-8", "surrogateescape")
        nl = b.endswith(b"\n")
        out = self.block(b if nl else b + b"\n", RedactState())
        if not nl:
            out = out[:-1]
        return out.decode("utf-8", "surrogateescape")


def _user_sub(m: re.Match) -> bytes:
    """A user pattern's match becomes <redacted>; with groups, only group 1 is."""
    if m.re.groups >= 1 and m.group(1) is not None:
        g0 = m.group(0)
        a, b = m.start(1) - m.start(0), m.end(1) - m.start(0)
        return g0[:a] + REDACTED + g0[b:]
    return REDACTED


class RedactState:
    __slots__ = ("in_pem",)

    def __init__(self):
        self.in_pem = False


def compile_patterns(patterns: Iterable[str]) -> list[str]:
    """Check user patterns; raises ValueError naming the bad one."""
    out = []
    for p in patterns:
        try:
            re.compile(p.encode("utf-8"))
        except re.error as e:
            raise ValueError(f"redact pattern {p!r}: {e}") from None
        out.append(p)
    return out


_DEFAULT: Redactor | None = None


def default_redactor() -> Redactor:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Redactor()
    return _DEFAULT


def redactor_from(patterns) -> Redactor:
    """The Ingest redactor: built-in rules plus the user's patterns (`redact:` / --redact)."""
    return Redactor(patterns) if patterns else default_redactor()


def redact_from_config(value, m) -> list[str]:
    """The top-level `redact:` list of regexes of a config mapping `m`; ConfigError with the line of a bad one."""
    from ..yamlfile import ConfigError

    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(m.file, m.line_of("redact"), "redact: must be a list of regular expressions")
    out = []
    for i, p in enumerate(value):
        line = value.line_of(i) if hasattr(value, "line_of") else m.line_of("redact")
        if not isinstance(p, str):
            raise ConfigError(m.file, line, f"redact: each pattern must be a string, got {p!r}")
        try:
            out += compile_patterns([p])
        except ValueError as e:
            raise ConfigError(m.file, line, str(e)) from None
    return out
