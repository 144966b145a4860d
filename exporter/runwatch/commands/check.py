"""`runwatch check`: validate a config and compile its packs, without starting anything.

Besides errors, it warns (on stderr, exit status still 0) about every user
regex that can only run on Python's backtracking engine: a pack rule or a
`redact:` pattern with a lookaround, a backreference or the like. Such a rule
works, but a hostile line can make it take time quadratic (or worse) in the
line's length; the warning names the file, the line and the construct.
"""
from __future__ import annotations

import os
import sys

from ..config import load_config
from ..parse import linear_regex
from ..parse.packs import BUILTIN_DIR, load_pack_file
from ..yamlfile import Map, load_file

_WHY = "runs on Python's backtracking regex engine, not RE2: a hostile line can stall it"


def backtracking_warnings(config: str | None, packs=()) -> list[str]:
    """One line per user regex that cannot run on RE2, as FILE:LINE: what: why (construct)."""
    out = []
    seen = set()
    for p in packs:
        if os.path.dirname(os.path.abspath(p.file)) == os.path.abspath(BUILTIN_DIR) or p.file in seen:
            continue
        seen.add(p.file)
        for r in p.rules:
            if r.rx.engine != "re2":
                out.append(f"{p.file}:{r.line}: pack {p.name!r}, rule {r.name!r}: {_WHY} "
                           f"({r.rx.fallback_reason})")
    if config:
        data = load_file(config)
        pats = data.get("redact") if isinstance(data, Map) else None
        if isinstance(pats, str):
            pats = [pats]
        for i, pat in enumerate(pats or []):
            if not isinstance(pat, str):
                continue
            rx = linear_regex.compile(pat.encode("utf-8"))
            if rx.engine != "re2":
                line = pats.line_of(i) if hasattr(pats, "line_of") else data.line_of("redact")
                out.append(f"{config}:{line}: redact pattern {pat!r}: {_WHY} ({rx.fallback_reason})")
    return out


def cmd_check(args) -> int:
    if not args.config and not args.rules:
        print("runwatch check: give a config (-c FILE) or pack files (--rules FILE)", file=sys.stderr)
        return 2
    n_runs = 0
    packs = []
    if args.config:
        cfg = load_config(args.config)
        n_runs = len(cfg.runs)
        packs += [p for run in cfg.runs for p in run.packs]
    for f in args.rules or []:
        packs.append(load_pack_file(os.path.abspath(f)))
    for w in backtracking_warnings(args.config, packs):
        print(f"warning: {w}", file=sys.stderr)
    what = []
    if args.config:
        what.append(f"{args.config}: {n_runs} run(s)")
    if args.rules:
        what.append(f"{len(args.rules)} pack file(s)")
    print("ok: " + ", ".join(what))
    return 0
