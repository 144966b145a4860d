"""The level of a log line: the first level word in it (ERROR, Warning, info, Traceback, FATAL …).

Shipped to Loki as the `level` structured metadata of each line; a line without
a level word is 'unknown'. The word must stand alone (`errors: 0` is not an error).
"""
from __future__ import annotations

import re

# Case variants spelled out: twice as fast as (?i) on the consumer's per-line path.
_LEVEL_WORDS = {"critical": "critical", "fatal": "critical", "panic": "critical", "error": "error",
                "exception": "error", "traceback": "error", "warning": "warn", "warn": "warn",
                "info": "info", "debug": "debug", "trace": "trace"}
LEVEL_OF_WORD: dict[str, str] = {}
for _w, _l in _LEVEL_WORDS.items():
    LEVEL_OF_WORD.update({_w: _l, _w.upper(): _l, _w.capitalize(): _l})
_LEVEL_RE = re.compile(r"\b(" + "|".join(sorted(LEVEL_OF_WORD, key=lambda w: (-len(w), w))) + r")\b")
level_word_search = _LEVEL_RE.search          # group 1 is the word; LEVEL_OF_WORD maps it to its level
_LEVEL_HINTS = (b"crit", b"fatal", b"panic", b"err", b"exception", b"traceback", b"warn", b"info",
                b"debug", b"trace")
DEFAULT_LEVEL = "unknown"
LEVELS = sorted(set(_LEVEL_WORDS.values())) + [DEFAULT_LEVEL]


def level_of(line: str) -> str:
    """The first level keyword in a line (ERROR, WARNING, INFO, …), else 'unknown'."""
    m = level_word_search(line)
    return LEVEL_OF_WORD[m.group(1)] if m else DEFAULT_LEVEL


def block_may_have_level(block: bytes) -> bool:
    """False when no line of the block can hold a level word (then every line is 'unknown')."""
    low = block.lower()
    return any(h in low for h in _LEVEL_HINTS)
