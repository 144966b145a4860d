"""Compiled bytecode kept outside the checkout when PYTHONDONTWRITEBYTECODE asks for none in it.

With that variable set, every `runwatch` process a test starts compiled the whole
package from source again (a few tenths of a second of CPU each, dozens of times
per run), and pytest re-rewrote every test module on every run. Bytecode then goes
to a cache directory of its own under the system's temp directory instead
(PYTHONPYCACHEPREFIX, sys.pycache_prefix): the checkout stays free of __pycache__
as asked, and a stale entry is recompiled as usual (checked against the source).
"""
from __future__ import annotations

import os
import sys
import tempfile


def cache_outside_the_checkout() -> str | None:
    """For this process (modules imported from now on) and every child; the directory, or None."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return None                 # bytecode is written where Python writes it: nothing to do
    where = os.environ.get("PYTHONPYCACHEPREFIX") or os.path.join(
        tempfile.gettempdir(), f"runwatch-tests-pycache-{os.getuid()}")
    os.makedirs(where, exist_ok=True)
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    os.environ["PYTHONPYCACHEPREFIX"] = where
    sys.pycache_prefix = where
    sys.dont_write_bytecode = False
    return where
