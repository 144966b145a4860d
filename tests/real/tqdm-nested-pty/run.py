"""Nested tqdm bars: epochs outside, batches inside (leave=False), on stderr.
Truth: each bar's counters when it closed."""
import json
import time

from tqdm import tqdm, trange

closed = []
outer = trange(3, desc="epoch", mininterval=0)
for epoch in outer:
    inner = tqdm(range(40), desc="batch", leave=False, mininterval=0)
    for _ in inner:
        time.sleep(0.001)
    closed.append({"bar": "batch", "n": inner.n, "total": inner.total})
outer.close()
closed.append({"bar": "epoch", "n": outer.n, "total": outer.total})
with open("truth.json", "w") as f:
    json.dump({"bars": closed, "final_n": outer.n, "final_total": outer.total}, f)
