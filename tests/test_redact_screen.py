"""The cheap ways through redaction give the same result as the thorough ones.

The folded trigger search settles on letters the log rarely holds (and then lowers no block),
and the screen (one multi-line pass over a block's triggered lines) skips blocks whose triggered
lines no rule would change; over a big block it runs first, part by part, and sends only the parts
it finds something in the trigger words' way. Both are checked against the plain way: a naive
search, and the same redactor with the screen off.
"""
from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runwatch.parse.redact import SCREEN_BYTES, TRIGGER_WORDS, RedactState, Redactor
from runwatch.parse.textsearch import FoldedKeywordSet, KeywordFinder, KeywordSet

from test_redact import ORDINARY, PEM, SECRET_LINES
from test_redact_shapes import BLOCKS, ORDINARY_LINES, SHAPES

WORDS = [w.encode() for w in TRIGGER_WORDS]
# a chatty job's lines: every letter of bearer, secret and passphrase is common here, k and w are not
NOISE = (b'2026-11-24 10:00:00,001 DEBUG urllib3.connectionpool: http://127.0.0.1:5000 "POST /execute HTTP/1.1" 200 1\n'
         b"2026-11-24 10:00:00,002 INFO openadapt_evals.runner: Step 7: CLICK\n")


class NoLower(bytes):
    """A block that must not be lowered as a whole (its slices are plain bytes)."""

    def lower(self):
        raise AssertionError("the whole block was lowered")


def naive(block: bytes, words) -> list[int]:
    out, pos = [], 0
    for line in block.split(b"\n")[:-1]:
        if any(w in line.lower() for w in words):
            out.append(pos)
        pos += len(line) + 1
    return out


def test_folded_search_finds_what_a_naive_search_finds_while_it_switches_letters():
    rng = random.Random(7)
    fs = FoldedKeywordSet(WORDS)
    pieces = ["key", "KEY", "Key", "kEy", "SeCrEt", "PASSW", "bearer", "WandB", "cookie", "pwd", "passphrase",
              "AuThOrIzAtIoN", "token", "k", "K", "w", "z", "b", "p", "c", "ke", "ey", "secre", "x ", "e", "r", "s"]
    for round_ in range(60):           # blocks of changing letter mixes: the finders move on and start over
        density = rng.choice((1, 3, 20, 60))
        lines = [b"".join(rng.choice(pieces).encode() for _ in range(rng.randint(0, density)))
                 for _ in range(rng.randint(1, 1500))]
        block = b"\n".join(lines) + b"\n"
        starts: list[int] = []
        fs.find_lines(block, starts)
        assert sorted(set(starts)) == naive(block, WORDS), round_


def test_folded_search_settles_on_rare_letters_and_then_lowers_no_block():
    fs = FoldedKeywordSet([b"key", b"authorization", b"passw", b"wandb"])   # each has a letter NOISE lacks
    block = NOISE * 6000 + b"HotKey pressed\n" + NOISE * 10 + b"my PassWord here\n"
    for _ in range(6):
        starts: list[int] = []
        fs.find_lines(block, starts)
        assert sorted(set(starts)) == naive(block, fs.kws)
    starts = []
    fs.find_lines(NoLower(block), starts)                # settled: no letter proves common any more
    assert sorted(set(starts)) == naive(block, fs.kws) and len(set(starts)) == 2


def _line_starts(block: bytes) -> list[int]:
    return [0] + [i + 1 for i, c in enumerate(block) if c == 0x0A]


def test_a_keyword_on_a_last_line_without_its_newline_is_found_once():
    # the search goes on from the next line's start: with no newline after a hit there is none
    for block in (b"x\n@", b"@", b"a@b\nc@", b"AKIA\nxAKIA", b"ghp_\nghs_x"):
        lone = KeywordFinder(b"@")
        for f in (lone, KeywordFinder(b"AKIA"), KeywordFinder(b"ghs_")):
            for mode in (False, True):
                f.mode_find = mode or len(f.kw) == 1
                starts: list[int] = []
                f.find_lines(block, starts)
                want = [i for i, line in zip(_line_starts(block), block.split(b"\n"), strict=True) if f.kw in line]
                assert starts == want, (block, f.kw, mode)
        starts = []
        KeywordSet([b"ghp_", b"ghs_", b"gho_"]).find_lines(block, starts)    # one shared hunt of g
        assert sorted(set(starts)) == naive(block + b"\n", [b"ghp_", b"ghs_", b"gho_"])
        starts = []
        FoldedKeywordSet([b"akia", b"key"]).find_lines(block + b" KEY", starts)
        assert sorted(set(starts)) == naive(block + b" KEY\n", [b"akia", b"key"])


def test_a_keyword_without_a_rare_letter_is_still_found():
    fs = FoldedKeywordSet([b"bearer", b"secret"])
    block = NOISE * 3000 + b"a BeArEr x\n" + NOISE + b"SECRET\n"
    for _ in range(FoldedKeywordSet.RETRY_BLOCKS + 5):     # through the lowered blocks and the fresh start
        starts: list[int] = []
        fs.find_lines(block, starts)
        assert sorted(set(starts)) == naive(block, fs.kws)


def _corpus_lines() -> list[bytes]:
    lines = [s.encode() for s, _ in SECRET_LINES] + [s.encode() for s, _, _ in SHAPES]
    lines += [s.encode() for s in ORDINARY] + [s.encode() for s in ORDINARY_LINES]
    return [line + b"\n" for line in lines]


def _unscreened() -> Redactor:
    r = Redactor()
    r._screen = None
    return r


def test_the_screen_changes_nothing_on_the_corpus():
    screened, plain = Redactor(), _unscreened()
    assert screened._screen is not None
    lines = _corpus_lines()
    for line in lines:
        assert screened.block(line, RedactState()) == plain.block(line, RedactState()), line
    rng = random.Random(3)
    hotkeys = b"2026-11-24 INFO runner: Step 3: HOTKEY\n"
    choices = lines + [NOISE, hotkeys, PEM] + [b for b, _, _ in BLOCKS]
    for _ in range(200):
        parts = [rng.choice(choices) for _ in range(rng.randint(1, 12))]
        block = b"".join(parts)
        assert screened.block(block, RedactState()) == plain.block(block, RedactState())


def test_a_block_whose_trigger_lines_hold_no_secret_comes_back_as_the_same_object():
    block = (NOISE * 50 + b"2026-11-24 INFO runner: Step 3: HOTKEY\n") * 40
    assert Redactor().block(block, RedactState()) is block
    assert Redactor().block(block + b"api_key=abc123\n", RedactState()).endswith(b"api_key=<redacted>\n")


def test_big_blocks_are_screened_part_by_part_with_the_same_result():
    screened, plain = Redactor(), _unscreened()
    lines = _corpus_lines()
    rng = random.Random(11)
    choices = lines + [PEM, b"-----BEGIN RSA PRIVATE KEY-----\n", b"-----END RSA PRIVATE KEY-----\n"]
    for round_ in range(40):
        parts: list[bytes] = []
        size = rng.choice((2, 3, 5)) * SCREEN_BYTES
        secrets = rng.choice((0, 1, 3, 20))
        while sum(map(len, parts)) < size:
            parts.append(NOISE * rng.randint(1, 400))
            for _ in range(rng.randint(0, secrets)):
                parts.append(rng.choice(choices))
        block = b"".join(parts)
        if rng.random() < 0.2:
            block = block[:-1]                   # a last line without its newline
        s1, s2 = RedactState(), RedactState()
        assert screened.block(block, s1) == plain.block(block, s2), round_
        assert s1.in_pem == s2.in_pem            # a private key block open at the end stays open
        tail = b"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC\n-----END RSA PRIVATE KEY-----\n" + NOISE
        assert screened.block(tail, s1) == plain.block(tail, s2)


def test_a_clean_big_block_comes_back_as_the_same_object_and_a_secret_in_it_is_found():
    block = NOISE * (3 * SCREEN_BYTES // len(NOISE))
    assert Redactor().block(block, RedactState()) is block
    dirty = block[:SCREEN_BYTES + 5000] + b"token=abc123\n" + block[SCREEN_BYTES + 5000:]
    out = Redactor().block(dirty, RedactState())
    assert out == dirty.replace(b"token=abc123", b"token=<redacted>")


def test_user_patterns_are_screened_unless_an_anchor_means_something_else_on_joined_lines():
    r = Redactor([r"internal-[0-9]+"])
    assert r._screen is not None
    assert r.block(b"HOTKEY\ninternal-42 x\n", RedactState()) == b"HOTKEY\n<redacted> x\n"
    for anchored in (r"^internal-[0-9]+", r"\Ainternal", r"x\B"):
        assert Redactor([anchored])._screen is None, anchored
    assert Redactor([r"a\\Ab", r"\^x"])._screen is not None       # a literal backslash or caret is no anchor


_SCREENED, _PLAIN = Redactor(), _unscreened()
_TEXT = st.text(alphabet="abcdefkeyKEYtokensecretpasswd=: \"'-_/@\\", max_size=80)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_TEXT, st.sampled_from([s for s, _, _ in SHAPES])), min_size=1, max_size=8))
def test_property_screened_and_unscreened_redaction_agree(lines):
    block = ("\n".join(lines) + "\n").encode()
    assert _SCREENED.block(block, RedactState()) == _PLAIN.block(block, RedactState())
