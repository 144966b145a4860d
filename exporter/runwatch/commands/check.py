"""`runwatch check`: validate a config and compile its packs, without starting anything."""
from __future__ import annotations

import os
import sys

from ..config import load_config
from ..parse.packs import load_pack_file


def cmd_check(args) -> int:
    if not args.config and not args.rules:
        print("runwatch check: give a config (-c FILE) or pack files (--rules FILE)", file=sys.stderr)
        return 2
    n_runs = 0
    if args.config:
        cfg = load_config(args.config)
        n_runs = len(cfg.runs)
    for f in args.rules or []:
        load_pack_file(os.path.abspath(f))
    what = []
    if args.config:
        what.append(f"{args.config}: {n_runs} run(s)")
    if args.rules:
        what.append(f"{len(args.rules)} pack file(s)")
    print("ok: " + ", ".join(what))
    return 0
