"""`uv pip install` that fails to resolve: two pins of one package that cannot both hold.
Truth: uv's exit code and `uv pip list --format json` afterwards (nothing installed)."""
import json
import subprocess

subprocess.check_call(["uv", "venv", "-q", "env"])
code = subprocess.call(["uv", "pip", "install", "--no-cache", "--python", "env/bin/python",
                        "six==1.17.0", "six==1.16.0"])
listed = subprocess.run(["uv", "pip", "list", "--format", "json", "--python", "env/bin/python"],
                        capture_output=True, text=True).stdout
with open("truth.json", "w") as f:
    json.dump({"uv_exit": code, "installed": {p["name"]: p["version"] for p in json.loads(listed or "[]")}}, f)
