"""A download-style bar: bytes with unit_scale and unit_divisor (`1.00M/2.00M [...]`).
Truth: the bar's counters."""
import json
import time

from tqdm import tqdm

bar = tqdm(total=3_000_000, unit="B", unit_scale=True, unit_divisor=1024, desc="model.bin", mininterval=0)
for _ in range(60):
    time.sleep(0.002)
    bar.update(50_000)
bar.close()
with open("truth.json", "w") as f:
    json.dump({"final_n": bar.n, "final_total": bar.total}, f)
