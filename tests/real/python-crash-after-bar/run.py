"""A training loop that crashes in the middle of a tqdm bar updated by hand (as trainers
do: bar.update() per step, on stderr, not a terminal): the bar is not closed before the
interpreter prints the traceback, so "Traceback (most recent call last):" starts right
after the bar's last "\\r" redraw, on the same line. Truth: the bar's own counters at the
crash and the uncaught exception."""
import json
import sys
import time

from tqdm import tqdm

bar = tqdm(total=100, desc="train", mininterval=0)
_hook = sys.excepthook


def _record(etype, value, tb):
    with open("truth.json", "w") as f:
        json.dump({"uncaught_exceptions": 1, "exception": etype.__name__,
                   "bar_n": bar.n, "bar_total": bar.total}, f)
    _hook(etype, value, tb)


sys.excepthook = _record

for step in range(100):
    time.sleep(0.002)
    if step == 37:
        raise ValueError("loss is NaN")
    bar.update(1)
