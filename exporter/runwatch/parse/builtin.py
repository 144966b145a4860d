"""Where the packs runwatch ships live, and their names: nothing else, so that a command can
check a pack name without loading the pack machinery (`runwatch run` does, before it starts
its command)."""
from __future__ import annotations

import os

BUILTIN_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "packs")


def builtin_names() -> list[str]:
    return sorted(f[:-5] for f in os.listdir(BUILTIN_DIR) if f.endswith(".yaml"))
