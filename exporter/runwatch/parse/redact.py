"""Secrets out of log lines, before a line leaves the process.

Every line runwatch reads goes through here before it reaches Loki, the status
page's recent lines or any API, and so do the text fields of posted events:
Azure SAS signatures (`sig=`), storage account keys and connection strings
(`AccountKey=`), `Authorization:` headers and bare `Bearer …` / `Basic …`
credentials, `Set-Cookie` values, W&B API keys, AWS access keys, the password
of a URL (`https://user:pass@`, `postgres://`, `redis://`), `mysql -pX` and
`docker login -p X`, well-known token shapes (OpenAI `sk-`, GitHub `ghp_` and
`github_pat_`, GitLab `glpat-`, Slack `xoxb-`, Stripe `sk_live_`, Google
`AIza…`, Hugging Face `hf_`, JWTs), `password=` / `token=` / `secret=` /
`api_key=` / `pwd=` / `passphrase:` pairs with the name in any case (also JSON
style `"password": "…"`, escaped JSON `{\\"password\\": \\"…\\"}`, ANSI colour codes
around the name), and the body of `-----BEGIN … PRIVATE KEY-----` blocks (PEM,
OpenSSH, PGP). Users add their own patterns (`redact:` in the config,
`--redact` on the command line).

The line path works on *blocks* (bytes of complete lines, each ending in
b"\\n"), so this does too. A cheap prefilter runs first: the block is searched
for a handful of trigger words (in any case) and exact markers at memchr speed
(textsearch.py); the regular expressions run only on the lines that hold a
trigger. Before that, one multi-line pass of every rule over the triggered
lines joined (the screen) tells whether any of them would change: a line that
only names a key (`HOTKEY`, `KeyError`) costs no pass of its own. A block
without a trigger (nearly all of them), or whose triggered lines hold no secret,
comes back as the very same object. Every rule runs on RE2 (linear_regex.py): no line can make
redaction backtrack.

The secret is replaced by `<redacted>`; what names it (`sig=`, `AccountKey=`,
`Authorization: Bearer`) stays, so a reader still sees what was there.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from . import linear_regex
from .textsearch import FoldedKeywordSet, KeywordSet

REDACTED = b"<redacted>"

# A line is examined only if it holds one of these words, in any mix of cases
# (x-api-key, X-Api-Key, PassWord). Each is found with a memchr of both cases of
# its rarest letter (textsearch.py), so a block without any costs a few C-level
# scans and no per-line Python work.
TRIGGER_WORDS = ("key", "token", "secret", "passw", "pwd", "passphrase", "bearer", "authorization", "cookie",
                 "wandb")
# Case-sensitive by definition: AWS key ids are upper case; a SAS signature is
# the query parameter `sig=` (after ? or &, as in every SAS URL and
# SharedAccessSignature=sv=…&sig=…); token prefixes are written as issued.
TRIGGERS_EXACT = (b"AKIA", b"ASIA", b"&sig=", b"?sig=",
                  b"Signature=",        # presigned S3 / GCS URLs: X-Amz-Signature=, X-Goog-Signature=
                  b"sk-",               # OpenAI-style API keys
                  b"eyJ",               # JWTs: base64 of '{"'
                  b"@",                 # URL userinfo: scheme://user:pass@host
                  b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat_", b"glpat-",
                  b"xox",               # Slack xoxb- xoxp- xoxa- …
                  b"k_live_", b"k_test_",   # Stripe sk_live_ rk_live_ sk_test_
                  b"AIza",              # Google API keys
                  b"hf_",               # Hugging Face
                  b"Basic ",            # a bare Basic credential (the header form is under "authorization")
                  b"mysql", b"login")   # the commands: mysql -pX, docker login -p X


# A value: escaped-quoted (\"x\" inside a JSON string), quoted, or up to a delimiter.
_VALUE = rb"""(\\["'][^"'\\\n]*\\["']|"[^"\n]*"|'[^'\n]*'|[^\s"',;&]+)"""
_ANSI = rb"(?:\x1b\[[0-9;]*m)*"      # colour codes between a name and its value
_NAMES = (rb"(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|"
          rb"private[_-]?key|account[_-]?key|client[_-]?secret|auth[_-]?token|access[_-]?token|"
          rb"refresh[_-]?token|sas[_-]?token)")


def _keep1(m: re.Match) -> bytes:
    return m.group(1) + REDACTED


def _keep1_at(m: re.Match) -> bytes:
    return m.group(1) + REDACTED + m.group(2)


def _keep12(m: re.Match) -> bytes:
    return m.group(1) + (m.group(2) or b"") + REDACTED


def _keyvalue(m: re.Match) -> bytes:
    # groups: 1 what stands before the name (start of line or a byte that is not
    # part of a name), 2 the name, 3 the separator, 4 the value
    v = m.group(4)
    if v[:1] == b"\\":                   # escaped JSON inside a string: \"password\": \"x\"
        return m.group(1) + m.group(2) + m.group(3) + v[:2] + REDACTED + v[:2]
    if v[:1] in (b'"', b"'"):
        if len(v) <= 2:                 # "" : nothing to hide
            return m.group(0)
        return m.group(1) + m.group(2) + m.group(3) + v[:1] + REDACTED + v[:1]
    return m.group(1) + m.group(2) + m.group(3) + REDACTED


def _pem_inline(m: re.Match) -> bytes:
    if not m.group(2).strip():          # the BEGIN line of a multi-line block: the body follows
        return m.group(0)
    return m.group(1) + REDACTED + m.group(3)


# A name starts a line or follows a byte that cannot be part of one: the
# lookbehind (?<![\w-]) said the same, but RE2 (linear time) has no lookbehind,
# so that byte is matched, kept as group 1 and written back.
_NAME_START = rb"(^|[^\w-])"
_c = linear_regex.compile

# (pattern, replacement); applied in this order to each triggered line. Every
# one runs on RE2 (tests/test_linear_time.py holds them to that).
BUILTIN: list[tuple[object, object]] = [
    # Connection strings: AccountKey=…; SharedAccessKey=…; SharedAccessSignature=sv=…&sig=…
    (_c(rb"(?i)(\b(?:AccountKey|SharedAccessKey|SharedAccessSignature)\s*=\s*)[^;\s\"']+"), _keep1),
    # Azure SAS: …?sv=2021-08-06&se=…&sig=AbC%2Bx%3D
    (_c(rb"(?i)(\bsig=)[^&\s\"'<>;]+"), _keep1),
    # Authorization: Bearer x / Basic x / SharedKey acct:x / token x (headers, curl -H, dict dumps)
    (_c(rb"(?i)(\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
        rb"((?:basic|bearer|token|digest|sharedkey|sas|negotiate|ntlm|apikey)\s+)?[^\s\"',]+"),
     _keep12),
    # A bare bearer token (long enough to be one, so "bearer authentication" stays)
    (_c(rb"(?i)(\bbearer\s+)[A-Za-z0-9\-._~+/]{20,}=*"), _keep1),
    # A bare Basic credential: base64 with a digit, + / or = in it ("Basic configuration" stays)
    (_c(rb"(\bBasic\s+)(?:[A-Za-z0-9+/]{3,}[0-9+/=][A-Za-z0-9+/=]*|[0-9+/=][A-Za-z0-9+/=]{3,})"), _keep1),
    # Cookies: Set-Cookie: session=…; Path=/ (the first cookie's value)
    (_c(rb"(?i)(\b(?:set-)?cookie\s*:\s*[^=;\s]+=)[^;\s]+"), _keep1),
    # The password of a URL: https://user:pass@host, postgres://u:p@db, redis://:p@cache
    (_c(rb"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(@)"), _keep1_at),
    # mysql -pX (the password glued to -p), docker login -p X
    (_c(rb"(\bmysql(?:dump|admin|sh)?\b[^\n]*?\s-p)[^\s\"']+"), _keep1),
    (_c(rb"(\bdocker\s+login\b[^\n]*?\s-p\s+)[^\s\"']+"), _keep1),
    # W&B: `wandb login <key>` (WANDB_API_KEY=… is a key=value pair below)
    (_c(rb"(?i)(\bwandb\s+login\b[^\n]*?\s)[0-9A-Za-z_-]{40,}"), _keep1),
    # AWS access key ids
    (_c(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    # Presigned S3 / GCS URLs
    (_c(rb"(?i)([?&]X-(?:Amz|Goog)-Signature=)[^&\s\"'<>]+"), _keep1),
    # Well-known key shapes, the prefix kept: OpenAI sk-…, GitHub ghp_… / github_pat_…, GitLab glpat-…,
    # Slack xoxb-…, Stripe sk_live_…, Google AIza…, Hugging Face hf_…, and JWTs (three base64url parts)
    (_c(rb"\b(sk-(?:proj-)?)[A-Za-z0-9_-]{20,}"), _keep1),
    (_c(rb"\b(gh[pousr]_|github_pat_)[A-Za-z0-9_]{20,}"), _keep1),
    (_c(rb"\b(glpat-)[A-Za-z0-9_-]{20,}"), _keep1),
    (_c(rb"\b(xox[abposr]-)[A-Za-z0-9-]{10,}"), _keep1),
    (_c(rb"\b([sr]k_(?:live|test)_)[A-Za-z0-9]{10,}"), _keep1),
    (_c(rb"\b(AIza)[0-9A-Za-z_-]{35}"), _keep1),
    (_c(rb"\b(hf_)[A-Za-z0-9]{30,}"), _keep1),
    (_c(rb"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), REDACTED),
    # One-line private keys (JSON service-account files, escaped newlines)
    (_c(rb"(-----BEGIN[A-Z0-9 ]* PRIVATE KEY(?: BLOCK)?-----)(.*?)"
        rb"(-----END[A-Z0-9 ]* PRIVATE KEY(?: BLOCK)?-----|$)"), _pem_inline),
    # password=… token: … "secret": "…" X-Api-Key: … aws_secret_access_key = … --password=… PassWord=…
    # {\"password\": \"…\"} and \x1b[1mpassword\x1b[0m: …
    (_c(rb"(?i)" + _NAME_START + rb"([\w.-]*?" + _NAMES + rb")(" + _ANSI + rb"\\?[\"']?" + _ANSI +
        rb"\s*[:=]\s*" + _ANSI + rb")" + _VALUE), _keyvalue),
    # --password hunter2, -token abc (a flag, a space, a value)
    (_c(rb"(?i)" + _NAME_START + rb"(--?[\w-]*?" + _NAMES + rb")(\s+)([^\s\"'-][^\s\"']*)"), _keyvalue),
]

def _screenable(pattern) -> bool:
    """No anchor whose meaning changes when lines are joined (see Redactor's screen)."""
    p = pattern.encode("utf-8", "surrogatepass") if isinstance(pattern, str) else pattern
    p = p.replace(b"\\\\", b"").replace(b"\\^", b"")     # escaped backslashes and carets are literals
    if any(a in p for a in (b"\\A", b"\\Z", b"\\B", b"\\z")):
        return False
    return b"^" not in p.replace(_NAME_START, b"").replace(b"[^", b"")


_PEM_BEGIN = _c(rb"-----BEGIN[A-Z0-9 ]* PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = b"-----END"


# The whole-block screen's part (see Redactor.block): big enough that a call costs nothing, small
# enough that a part holding a secret sends little else the slower way.
SCREEN_BYTES = 64 << 10


class Redactor:
    """Compiled redaction rules (shareable) with per-stream state for PEM blocks.

    `block(block, state)` redacts a block of complete lines; `state` is a
    `RedactState` kept per stream (a private key block spans lines and may
    span blocks). `text(s)` redacts a str (one or more lines) statelessly.
    """

    def __init__(self, extra: Iterable[str | bytes] = (), *, builtin: bool = True):
        self.rules = list(BUILTIN) if builtin else []
        self.user: list = []
        for p in extra:
            try:
                rx = linear_regex.compile(p.encode("utf-8") if isinstance(p, str) else p)
            except re.error as e:
                raise ValueError(f"redact pattern {p!r}: {e}") from None
            self.user.append(rx)
            self.rules.append((rx, _user_sub))
        # One RE2 pass tells which rules can match a triggered line; only those run
        # (a rule on Python re, a user's with a lookaround, always runs).
        linear = [i for i, (rx, _) in enumerate(self.rules) if rx.engine == "re2"]
        try:
            self._set = linear_regex.PatternSet([self.rules[i][0] for i in linear])
        except ValueError:               # RE2 would not take them together: each rule on every line
            self._set, linear = linear_regex.PatternSet([]), []
        self._linear_index = linear
        self._always = [i for i in range(len(self.rules)) if i not in set(linear)]
        # The screen: the rules' set once over a block's triggered lines joined. A rule that
        # matches within one line matches within the lines joined as long as it has no anchor
        # that means something else there: `$` is a line's end already (linear_regex), and a
        # name's start, (^|[^\w-]), takes the newline before a line for its ^. So a screen that
        # finds nothing proves that no line would change (a line naming a key, `HOTKEY`, costs
        # no pass of its own). Rules with another anchor (a user's \A) keep the per-line way.
        self._screen = None
        if not self._always and all(_screenable(rx.pattern) for rx, _ in self.rules):
            self._screen = self._set
        self.triggers = KeywordSet(TRIGGERS_EXACT if builtin else [])
        self.words = FoldedKeywordSet([w.encode() for w in TRIGGER_WORDS] if builtin else [])

    # ---------------------------------------------------------------- blocks

    def block(self, block: bytes, state: "RedactState | None" = None) -> bytes:
        screen = self._screen
        if screen is None or len(block) <= SCREEN_BYTES:
            return self._triggered(block, state)
        # The screen over the whole block first, a part of SCREEN_BYTES at a time: one RE2
        # pass proves a clean part clean (~2.5 ms per MiB), where hunting the trigger words
        # costs 3-7 ms per MiB in a log whose every letter is common. A part it finds
        # something in, or one inside a private key block, takes the trigger words' way.
        if state is None:
            state = RedactState()        # a private key block may span the parts
        out: list[bytes] = []
        pos, n, find, changed = 0, len(block), block.find, False
        while pos < n:
            end = find(b"\n", pos + SCREEN_BYTES - 1) + 1 if pos + SCREEN_BYTES < n else n
            if end <= 0:
                end = n
            part = block[pos:end] if pos or end < n else block
            if state.in_pem or screen.matching(part):
                new = self._triggered(part, state)
                changed = changed or new is not part
                part = new
            out.append(part)
            pos = end
        return b"".join(out) if changed else block

    def _triggered(self, block: bytes, state: "RedactState | None") -> bytes:
        """The lines holding a trigger word, redacted (the rest untouched)."""
        if state is not None and state.in_pem:
            head, block = self._pem_body(block, 0, state)
            if not block:
                return head
            return head + self._triggered(block, state)
        spans: list[int] = []
        self.triggers.find_lines(block, spans)
        self.words.find_lines(block, spans)
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
        starts = sorted(set(spans))
        if self._screen is not None:
            find = block.find
            lines = b"".join([block[s:find(b"\n", s) + 1 or None] for s in starts])
            if not self._screen.matching(lines):
                return block
        return self._rewrite(block, starts, state)

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
            m = _PEM_BEGIN.search(line) if b"-----BEGIN" in line else None
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
        hits = [self._linear_index[j] for j in self._set.matching(line)]
        if self._always:
            hits = sorted(hits + self._always)
        rules = self.rules
        for i in hits:                  # in rule order, as if every rule ran
            rx, repl = rules[i]
            line = rx.sub(repl, line)
        return line

    def fields(self, d: dict, skip=()) -> dict:
        """A copy of a mapping (an event's fields) with every str value redacted
        (keys in `skip` left alone); values are copied only if something changed."""
        out = d
        for k, v in d.items():
            if isinstance(v, str) and k not in skip:
                r = self.text(v)
                if r != v:
                    if out is d:
                        out = dict(d)
                    out[k] = r
        return out

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
