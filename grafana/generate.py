#!/usr/bin/env python3
"""(Re)write grafana/dashboards/*.json from grafana/dashboards_src/.

    python grafana/generate.py            # rewrite the JSON files
    python grafana/generate.py --check    # exit 1 if a checked-in file differs

Needs grafana-foundation-sdk (pip install -e '.[test]'). Output is stable
(sorted keys, fixed panel ids) so that a diff means the code changed.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "dashboards"


def render() -> dict[str, str]:
    """File name -> JSON text, for every dashboard."""
    sys.path.insert(0, str(HERE))
    try:
        from dashboards_src import DASHBOARDS
    finally:
        sys.path.remove(str(HERE))
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="do not write; fail if the checked-in JSON is stale")
    args = ap.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = OUT / name
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            OUT.mkdir(exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(HERE.parent)}")
    if args.check and stale:
        print("stale dashboards (run python grafana/generate.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
