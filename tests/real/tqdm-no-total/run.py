"""A tqdm bar over a generator: no total, so no percentage (`123it [00:01, 95.2it/s]`).
Truth: the bar's counter and its (absent) total."""
import json
import time

from tqdm import tqdm


def records():
    for i in range(250):
        time.sleep(0.001)
        yield i


bar = tqdm(records(), desc="read", mininterval=0)
for _ in bar:
    pass
bar.close()
with open("truth.json", "w") as f:
    json.dump({"final_n": bar.n, "final_total": bar.total}, f)
