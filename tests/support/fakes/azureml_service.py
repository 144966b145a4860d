"""Azure ML as the real azure-ai-ml client sees it, behind `FakeAzure`.

Routes (recorded shapes): the ARM job (`.../workspaces/{ws}/jobs/{name}`), the
ARM workspace (for its `discoveryUrl`), the discovery document, the run
history `.../runs/{name}/details` (with `logFiles`: name -> blob SAS URL), and
the blobs themselves, which honour `Range: bytes=a-b` with 206/416 like Azure
Storage. Tests change `status`, `logs` (name -> bytes) and `job_type`, and can
make the blob service fail as it does for real: `blob_fail` is a `Reply` (the
storage firewall's 403 `AuthorizationFailure`, a 503 `ServerBusy`) or `HANGS`
(no answer: the client's read timeout decides).
"""
from __future__ import annotations

import re

from .azure_cloud import RG, SUB, FakeAzure, Hangs, Reply

WS = "ws-eval"
REGION = "eastus"
API = f"https://{REGION}.api.azureml.ms"
BLOB = "https://wsevalstore0123.blob.core.windows.net/azureml/ExperimentRun"
SAS = "sv=2019-07-07&sr=b&sig=FAKEsigFAKEsigFAKE%3D&skoid=0000&sktid=0000&skt=2025-03-01T10%3A00%3A00Z" \
      "&ske=2025-03-02T10%3A00%3A00Z&sks=b&skv=2019-07-07&st=2025-03-01T10%3A00%3A00Z&se=2025-03-01T18%3A00%3A00Z&sp=r"


def storage_error(status: int, code: str, message: str) -> Reply:
    """An Azure Storage error as the blob service sends it (XML body, x-ms-error-code)."""
    return Reply(status, f"<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code>"
                         f"<Message>{message}\nRequestId:5c1e0000-0000-0000-0000-000000000000\n"
                         f"Time:2025-03-01T10:05:00.0000000Z</Message></Error>",
                 {"Content-Type": "application/xml", "x-ms-error-code": code})


#: a storage account behind a firewall (or private endpoint) that the caller is outside of
FIREWALL_403 = storage_error(403, "AuthorizationFailure", "This request is not authorized to perform this operation.")
BUSY_503 = storage_error(503, "ServerBusy", "The server is currently unable to receive requests. Please retry "
                                            "your request.")

WS_ID = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}"


class FakeAzureML:
    def __init__(self, fake: FakeAzure, job: str = "calm_kettle_7x1"):
        self.fake, self.job = fake, job
        self.status = "Queued"
        self.job_type = "Command"
        self.logs: dict[str, bytes] = {}
        self.ranges: list[str] = []              # Range headers the blob service saw
        self.ignore_range = False                # a blob endpoint that always answers 200
        self.blob_fail: Reply | Hangs | None = None
        self.job_gets = 0
        arm = rf"management\.azure\.com/subscriptions/{SUB}/resourceGroups/{RG}/providers/" \
              rf"Microsoft\.MachineLearningServices/workspaces/{WS}"
        fake.route("GET", arm + r"\?", self._workspace)
        fake.route("GET", arm + rf"/jobs/{job}\?", self._job)
        fake.route("GET", re.escape(f"{API}/discovery"), self._discovery)
        fake.route("GET", re.escape(API) + r"/history/v1\.0/subscriptions/.*/runs/" + job + r"/details", self._details)
        fake.route("GET", re.escape(BLOB) + r"/dcid\.[^/]+/(?P<name>[^?]+)\?", self._blob)

    def studio_url(self) -> str:
        return f"https://ml.azure.com/runs/{self.job}?wsid={WS_ID}&tid=72f988bf-0000-0000-0000-000000000000"

    def _workspace(self, req, m) -> Reply:
        return Reply(200, {
            "id": WS_ID, "name": WS, "type": "Microsoft.MachineLearningServices/workspaces", "location": REGION,
            "tags": {}, "etag": None, "kind": "Default",
            "sku": {"name": "Basic", "tier": "Basic"},
            "identity": {"type": "SystemAssigned", "principalId": "9b2c0000-0000-0000-0000-000000000000",
                         "tenantId": "72f988bf-0000-0000-0000-000000000000"},
            "systemData": {"createdAt": "2025-01-10T08:00:00.0000000Z", "createdBy": "ada@example.com",
                           "createdByType": "User", "lastModifiedAt": "2025-01-10T08:00:00.0000000Z",
                           "lastModifiedBy": "ada@example.com", "lastModifiedByType": "User"},
            "properties": {
                "friendlyName": WS, "description": "",
                "storageAccount": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/"
                                  "storageAccounts/wsevalstore0123",
                "keyVault": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Keyvault/vaults/wsevalkv",
                "applicationInsights": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/"
                                       "Microsoft.insights/components/wsevalai",
                "hbiWorkspace": False, "provisioningState": "Succeeded", "publicNetworkAccess": "Enabled",
                "discoveryUrl": f"{API}/discovery",
                "mlFlowTrackingUri": f"azureml://{REGION}.api.azureml.ms/mlflow/v1.0{WS_ID}",
                "workspaceId": "4f5e0000-0000-0000-0000-000000000000", "v1LegacyMode": False,
                "storageHnsEnabled": False, "enableDataIsolation": False,
            },
        })

    def _discovery(self, req, m) -> Reply:
        return Reply(200, {"api": API, "catalog": f"https://catalog.{REGION}.api.azureml.ms",
                           "experimentation": API, "gallery": f"https://gallery.{REGION}.api.azureml.ms",
                           "history": API, "hyperdrive": API, "labeling": API, "modelmanagement": API,
                           "pipelines": API, "studio": "https://ml.azure.com"})

    def _job(self, req, m) -> Reply:
        self.job_gets += 1
        jid = f"{WS_ID}/jobs/{self.job}"
        return Reply(200, {
            "id": jid, "name": self.job, "type": "Microsoft.MachineLearningServices/workspaces/jobs",
            "properties": {
                "description": None, "tags": {}, "displayName": "waa-eval-10-tasks", "status": self.status,
                "properties": {"_azureml.ComputeTargetType": "amlcompute",
                               "ContentSnapshotId": "0f2a0000-0000-0000-0000-000000000000",
                               "ProcessInfoFile": "azureml-logs/process_info.json",
                               "ProcessStatusFile": "azureml-logs/process_status.json"},
                "experimentName": "waa", "computeId": f"{WS_ID}/computes/waa-cluster",
                "isArchived": False, "identity": None, "componentId": None, "notificationSetting": None,
                "jobType": self.job_type,
                "services": {
                    "Tracking": {"jobServiceType": "Tracking", "port": None, "status": None, "errorMessage": None,
                                 "properties": None, "nodes": None,
                                 "endpoint": f"azureml://{REGION}.api.azureml.ms/mlflow/v1.0{WS_ID}?"},
                    "Studio": {"jobServiceType": "Studio", "port": None, "status": None, "errorMessage": None,
                               "properties": None, "nodes": None, "endpoint": self.studio_url()},
                },
                "resources": {"instanceCount": 1, "shmSize": "2g"}, "parameters": {},
                "codeId": f"{WS_ID}/codes/0a1b0000-0000-0000-0000-000000000000/versions/1",
                "command": "python run_eval.py --tasks 10",
                "environmentId": "azureml://registries/azureml/environments/sklearn-1.5/versions/14",
                "environmentVariables": {}, "distribution": None, "inputs": {},
                "outputs": {"default": {"mode": "ReadWriteMount", "description": None, "jobOutputType": "uri_folder",
                                        "uri": f"azureml://datastores/workspaceartifactstore/ExperimentRun/dcid.{self.job}"}},
                "limits": None, "autologgerSettings": None, "queueSettings": {"jobTier": "Null"},
            },
            "systemData": {"createdAt": "2025-03-01T10:00:00.0000000Z", "createdBy": "Ada",
                           "createdByType": "User"},
        })

    def _details(self, req, m) -> Reply:
        files = {name: f"{BLOB}/dcid.{self.job}/{name}?{SAS}" for name in self.logs}
        return Reply(200, {
            "runId": self.job, "runUuid": "c1d20000-0000-0000-0000-000000000000", "parentRunUuid": None,
            "rootRunUuid": "c1d20000-0000-0000-0000-000000000000", "target": "waa-cluster",
            "status": self.status, "parentRunId": None, "dataContainerId": f"dcid.{self.job}",
            "createdTimeUtc": "2025-03-01T10:00:00.0000000+00:00", "startTimeUtc": "2025-03-01T10:02:00.0000000+00:00",
            "endTimeUtc": None, "error": None, "warnings": None, "tags": {},
            "properties": {"_azureml.ComputeTargetType": "amlcompute"},
            "parameters": {}, "services": {}, "inputDatasets": [], "outputDatasets": [],
            "runDefinition": None, "logFiles": files, "jobCost": {"chargedCpuCoreSeconds": None},
            "revision": 7, "runTypeV2": {"orchestrator": None, "traits": [], "attribution": None,
                                         "computeType": "AmlCompute"},
            "settings": {},
        })

    def _blob(self, req, m) -> Reply:
        if self.blob_fail is not None:
            return self.blob_fail
        body = self.logs.get(m.group("name"))
        if body is None:
            return Reply(404, "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>BlobNotFound</Code>"
                              "<Message>The specified blob does not exist.</Message></Error>",
                         {"Content-Type": "application/xml", "x-ms-error-code": "BlobNotFound"})
        rng = req.headers.get("Range") or req.headers.get("x-ms-range")
        self.ranges.append(rng or "")
        if not rng or self.ignore_range:
            return Reply(200, body, {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"})
        a, _, b = rng.removeprefix("bytes=").partition("-")
        start = int(a)
        end = min(int(b) if b else len(body) - 1, len(body) - 1)
        if start >= len(body):
            return Reply(416, "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>InvalidRange</Code>"
                              "<Message>The range specified is invalid for the current size of the resource."
                              "</Message></Error>",
                         {"Content-Type": "application/xml", "Content-Range": f"bytes */{len(body)}",
                          "x-ms-error-code": "InvalidRange"})
        return Reply(206, body[start:end + 1], {"Content-Type": "application/octet-stream",
                                                "Content-Range": f"bytes {start}-{end}/{len(body)}",
                                                "Accept-Ranges": "bytes"})
