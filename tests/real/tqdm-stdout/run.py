"""A tqdm bar on stdout with a postfix, interleaved with print() lines; stopped at 70%.
Truth: the bar's counters and its last postfix."""
import json
import sys
import time

from tqdm import tqdm

bar = tqdm(total=200, file=sys.stdout, desc="eval", mininterval=0)
for i in range(140):
    time.sleep(0.001)
    bar.update(1)
    bar.set_postfix(loss=f"{1.0 / (i + 1):.4f}")
    if i % 50 == 49:
        tqdm.write(f"checkpoint at {i + 1}", file=sys.stdout)
bar.close()
with open("truth.json", "w") as f:
    json.dump({"final_n": bar.n, "final_total": bar.total, "postfix": bar.postfix}, f)
