"""A local W&B GraphQL server for the real `wandb.Api` (`overrides={"base_url": url}`).

It answers the queries wandb 0.31's wandb-core sends (recorded by running the
SDK against a logging server): `Viewer`, `GetDefaultEntity`, `Run`,
`ServerFeaturesQuery`, `GetProject`, `ArtifactMembershipByName` (and the
older `ArtifactByName` / `Artifact` shapes, answered alike). Anything else is
answered with a GraphQL error and recorded in `unknown`.

State is set by the test: `runs[(entity, project, run_id)] = {...}`,
`artifacts[(entity, project, "name:alias")] = {...}`; `fail_next` is a list of
HTTP statuses to answer the next /graphql requests with (429, 500 …);
`hidden` holds (entity, project) pairs the key cannot see: like W&B, every
query about them answers `project: null` (the server does not tell "no such
project" from "not yours"). `kill_service()` kills this process's wandb-core
service process, as an OOM killer or a crash would.
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_OP = re.compile(r"\b(query|mutation)\s+(\w+)")


def run_node(run_id: str, state: str, summary: dict, *, entity: str = "ent", project: str = "proj") -> dict:
    """A `Run` as the W&B server returns it for RunFragment."""
    return {
        "id": "UnVuOnYxOmFiYzEyMzpwcm9qOmVudA==", "projectId": "123",
        "tags": [], "name": run_id, "displayName": "bright-sun-7", "sweepName": None,
        "state": state, "config": json.dumps({"lr": {"value": 0.001, "desc": None}}),
        "group": None, "jobType": None, "commit": None, "readOnly": False,
        "createdAt": "2025-03-01T10:00:00", "heartbeatAt": "2025-03-01T11:30:00",
        "description": None, "notes": None, "systemMetrics": "{}",
        "summaryMetrics": json.dumps(summary), "historyLineCount": 120,
        "user": {"name": "Ada", "username": "ada"}, "historyKeys": {"lastStep": 119, "keys": {}},
    }


def membership_node(entity: str, project: str, name: str, *, state: str = "COMMITTED",
                    created_at: str = "2025-03-01T12:00:00Z", atype: str = "wandb-history") -> dict:
    """An `ArtifactCollectionMembership` as the server returns it (ArtifactMembershipFragment)."""
    coll, _, alias = name.partition(":")
    proj = {"id": "UHJvamVjdDp2MToxMjM=", "internalId": "123", "name": project, "entity": {"name": entity}}
    collection = {"__typename": "ArtifactSequence", "name": coll, "project": proj}
    alias_node = {"__typename": "ArtifactAlias", "id": "QWxpYXM6MQ==", "alias": alias or "latest"}
    return {
        "__typename": "ArtifactCollectionMembership", "id": "TWVtYmVyc2hpcDox", "versionIndex": 0,
        "createdAt": created_at, "aliases": [alias_node], "artifactCollection": collection,
        "artifact": {
            "__typename": "Artifact", "id": "QXJ0aWZhY3Q6MQ==", "artifactSequence": collection,
            "versionIndex": 0, "artifactType": {"name": atype}, "description": None, "metadata": "{}",
            "ttlDurationSeconds": -2, "ttlIsInherited": True, "tags": [], "historyStep": None,
            "state": state, "size": 2048, "digest": "0123456789abcdef0123456789abcdef",
            "commitHash": "abcdef012345", "fileCount": 1, "createdAt": created_at, "updatedAt": created_at,
            "aliases": [dict(alias_node, artifactCollection=collection)],
        },
    }


class FakeWandb:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[tuple, dict] = {}
        self.artifacts: dict[tuple, dict] = {}
        self.fail_next: list[int] = []
        self.requests: list[tuple[str, dict]] = []   # (operation, variables)
        self.unknown: list[str] = []
        self.auth_headers: list[str] = []
        self.bad_key = False                          # answer Viewer as an unknown account
        self.hidden: set[tuple[str, str]] = set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, code: int, body: bytes, ctype="application/json", headers=()):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._send(404, b"")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                if not self.path.startswith("/graphql"):
                    return self._send(200, b"")          # wandb-core's OTel metrics export
                q = json.loads(body or b"{}")
                m = _OP.search(q.get("query", ""))
                op = m.group(2) if m else (q.get("operationName") or "")
                with fake.lock:
                    fake.auth_headers.append(self.headers.get("Authorization", ""))
                    fake.requests.append((op, q.get("variables") or {}))
                    status = fake.fail_next.pop(0) if fake.fail_next else None
                if status is not None:
                    headers = [("Retry-After", "1")] if status == 429 else []
                    return self._send(status, b'{"errors":[{"message":"injected"}]}', headers=headers)
                code, out = fake.answer(op, q.get("variables") or {})
                self._send(code, json.dumps(out).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)  # stop() within 20 ms, not the default 0.5 s

    def start(self) -> "FakeWandb":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self, op: str) -> int:
        with self.lock:
            return sum(1 for o, _ in self.requests if o == op)

    def answer(self, op: str, v: dict) -> tuple[int, dict]:
        with self.lock:
            if op in ("Viewer", "GetDefaultEntity"):
                if self.bad_key:
                    return 200, {"data": {"viewer": None}}
                return 200, {"data": {"viewer": {"id": "VXNlcjox", "entity": "ent", "username": "ada",
                                                 "email": "ada@example.com", "flags": "{}",
                                                 "teams": {"edges": []}}}}
            if op == "ServerFeaturesQuery":
                return 200, {"data": {"serverInfo": {"features": []}}}
            if op in ("Run", "GetProject", "ArtifactMembershipByName", "ArtifactByName", "Artifact") and (
                    (v.get("entity"), v.get("project") or v.get("name")) in self.hidden
                    if op == "GetProject" else (v.get("entity"), v.get("project")) in self.hidden):
                return 200, {"data": {"project": None}}
            if op == "GetProject":
                return 200, {"data": {"project": {
                    "__typename": "Project", "id": "UHJvamVjdDp2MToxMjM=", "name": v.get("name"),
                    "entityName": v.get("entity"), "createdAt": "2025-01-10T08:00:00", "isBenchmark": False,
                    "user": None}}}
            if op == "Run":
                node = self.runs.get((v.get("entity"), v.get("project"), v.get("name")))
                return 200, {"data": {"project": {"run": node}}}
            if op in ("ArtifactMembershipByName", "ArtifactByName", "Artifact"):
                node = self.artifacts.get((v.get("entity"), v.get("project"), v.get("name")))
                if op == "ArtifactMembershipByName":
                    return 200, {"data": {"project": {"artifactCollectionMembership": node}}}
                return 200, {"data": {"project": {"artifact": node["artifact"] if node else None}}}
            self.unknown.append(op)
            return 200, {"errors": [{"message": f"fake server: unknown operation {op!r}"}], "data": None}


def kill_service() -> int:
    """Kill the wandb-core process this Python process started; its pid."""
    import signal

    from wandb.sdk import wandb_setup
    conn = wandb_setup.singleton()._connection
    proc = conn._proc._process                     # subprocess.Popen of wandb-core
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return proc.pid
