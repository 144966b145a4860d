"""`uv pip install` into a fresh virtualenv that succeeds. Truth: uv's exit code and
`uv pip list --format json` of that environment afterwards."""
import json
import subprocess

subprocess.check_call(["uv", "venv", "-q", "env"])
code = subprocess.call(["uv", "pip", "install", "--no-cache", "--python", "env/bin/python",
                        "six==1.17.0", "idna==3.10"])
listed = subprocess.run(["uv", "pip", "list", "--format", "json", "--python", "env/bin/python"],
                        capture_output=True, text=True).stdout
with open("truth.json", "w") as f:
    json.dump({"uv_exit": code, "installed": {p["name"]: p["version"] for p in json.loads(listed or "[]")}}, f)
