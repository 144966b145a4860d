"""`pip install` of pinned packages into a fresh target that succeeds. Truth: pip's exit
code and `pip list` (JSON) of the target afterwards."""
import json
import subprocess
import sys

target = "site"
code = subprocess.call([sys.executable, "-m", "pip", "install", "--isolated", "--no-cache-dir", "--target", target,
                        "six==1.17.0", "idna==3.10"])
listed = subprocess.run([sys.executable, "-m", "pip", "list", "--isolated", "--format=json", "--path", target],
                        capture_output=True, text=True).stdout
with open("truth.json", "w") as f:
    json.dump({"pip_exit": code, "installed": {p["name"]: p["version"] for p in json.loads(listed or "[]")}}, f)
