"""An injected azure-core transport that answers like Azure, with no network.

`FakeAzure` is a `requests` adapter mounted on a session handed to azure-core's
`RequestsTransport` (an `HttpTransport`): the real SDK clients build, sign and
send their requests and parse the responses through their real pipelines; only
the socket is replaced. Routes are (method, regex on the URL) -> handler;
unrouted requests answer 404 and are recorded in `unrouted`, and every request
is recorded in `calls` (method, url, headers).

The JSON bodies below follow the shapes ARM and the Azure ML services return
(`virtualMachines/get?$expand=instanceView`, ARM error envelopes, 429 with
Retry-After).
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

SUB = "00000000-1111-2222-3333-444444444444"
RG = "rg-eval"


class FakeCredential:
    """A TokenCredential: azure-core's bearer policy calls get_token(*scopes).

    Each call is recorded in `scopes`: with `az login` credentials every call
    is an `az account get-access-token` subprocess, so tests count them."""

    def __init__(self, token: str = "fake-arm-token", lifetime: float = 3600):
        self.token, self.lifetime = token, lifetime
        self.scopes: list[tuple] = []

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time() + self.lifetime))


class Reply:
    def __init__(self, status: int = 200, body=None, headers: dict | None = None):
        self.status, self.body, self.headers = status, body, dict(headers or {})


class Hangs:
    """A handler result: the server accepted the connection and never answered.
    The adapter raises what `requests` raises when the read timeout expires
    (and refuses to wait forever: a request sent without a timeout fails the test)."""


HANGS = Hangs()


Handler = Callable[[requests.PreparedRequest, re.Match], Reply]


class FakeAzure(BaseAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.routes: list[tuple[str, re.Pattern, Handler]] = []
        self.calls: list[tuple[str, str, dict]] = []
        self.timeouts: list = []                  # the timeout each request was sent with
        self.unrouted: list[str] = []
        self.lock = threading.Lock()

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.insert(0, (method, re.compile(pattern), handler))   # later routes win

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        with self.lock:
            self.calls.append((request.method, request.url, dict(request.headers)))
            self.timeouts.append(timeout)
        for method, pat, handler in self.routes:
            m = pat.search(request.url)
            if m and method == request.method:
                reply = handler(request, m)
                break
        else:
            with self.lock:
                self.unrouted.append(f"{request.method} {request.url}")
            reply = Reply(404, {"error": {"code": "NotFound", "message": f"fake: no route for {request.url}"}})
        if isinstance(reply, Hangs):
            read = timeout[1] if isinstance(timeout, tuple) else timeout
            if read is None:
                raise AssertionError(f"fake: {request.url} was sent without a read timeout: it would hang forever")
            raise requests.exceptions.ReadTimeout(f"HTTPSConnectionPool: Read timed out. (read timeout={read})",
                                                  request=request)
        return self._response(request, reply)

    def close(self):
        pass

    @staticmethod
    def _response(request, reply: Reply) -> requests.Response:
        r = requests.Response()
        r.status_code = reply.status
        r.request, r.url = request, request.url
        body = reply.body
        headers = CaseInsensitiveDict(reply.headers)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        elif isinstance(body, str):
            body = body.encode()
        body = body or b""
        headers["Content-Length"] = str(len(body))
        headers.setdefault("x-ms-request-id", "7d1b6a8e-0000-0000-0000-000000000000")
        r.headers = headers
        r.reason = {200: "OK", 206: "Partial Content", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                    416: "Range Not Satisfiable", 429: "Too Many Requests", 500: "Internal Server Error",
                    503: "Service Unavailable"}.get(
                        reply.status, "")
        import io
        r.raw = io.BytesIO(body)
        r._content = body
        r._content_consumed = True
        r.encoding = "utf-8"
        return r

    def transport(self):
        """An azure-core transport that sends through this adapter."""
        from azure.core.pipeline.transport import RequestsTransport
        s = requests.Session()
        s.mount("https://", self)
        s.mount("http://", self)
        return RequestsTransport(session=s, session_owner=False)


# ---------------------------------------------------------------- ARM: virtual machines

def vm_body(name: str, power: str | None, *, size: str = "Standard_D8s_v3", location: str = "eastus",
            os_type: str = "Linux", license_type: str | None = None, priority: str | None = None) -> dict:
    """GET .../virtualMachines/{name}?$expand=instanceView&api-version=… as ARM returns it.

    os_type "Windows" gives a Windows image and osProfile; license_type is ARM's
    `licenseType` (Windows_Server: Azure Hybrid Benefit); priority "Spot" adds
    the eviction policy and billing profile ARM returns with it."""
    vm_id = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/{name}"
    statuses = [{"code": "ProvisioningState/succeeded", "level": "Info",
                 "displayStatus": "Provisioning succeeded", "time": "2025-03-01T09:58:12.1234567+00:00"}]
    display = {"starting": "VM starting", "running": "VM running", "stopping": "VM stopping",
               "stopped": "VM stopped", "deallocating": "VM deallocating", "deallocated": "VM deallocated"}
    if power:
        statuses.append({"code": f"PowerState/{power}", "level": "Info", "displayStatus": display.get(power, power)})
    body = {
        "name": name, "id": vm_id, "type": "Microsoft.Compute/virtualMachines", "location": location,
        "tags": {"purpose": "waa-eval"},
        "properties": {
            "vmId": "5c2d7f2e-8a1b-4c3d-9e0f-123456789abc",
            "hardwareProfile": {"vmSize": size},
            "storageProfile": {
                "imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy",
                                   "sku": "22_04-lts-gen2", "version": "latest",
                                   "exactVersion": "22.04.202502280"},
                "osDisk": {"osType": "Linux", "name": f"{name}_OsDisk_1", "createOption": "FromImage",
                           "caching": "ReadWrite", "managedDisk": {"storageAccountType": "Premium_LRS",
                                                                   "id": f"{vm_id}-osdisk"},
                           "deleteOption": "Delete", "diskSizeGB": 128},
                "dataDisks": []},
            "osProfile": {"computerName": name, "adminUsername": "azureuser",
                          "linuxConfiguration": {"disablePasswordAuthentication": True,
                                                 "provisionVMAgent": True},
                          "secrets": [], "allowExtensionOperations": True},
            "networkProfile": {"networkInterfaces": [
                {"id": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/"
                       f"networkInterfaces/{name}-nic"}]},
            "provisioningState": "Succeeded",
            "instanceView": {
                "computerName": name, "osName": "ubuntu", "osVersion": "22.04",
                "vmAgent": {"vmAgentVersion": "2.12.0.2", "statuses": [
                    {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Ready",
                     "message": "Guest Agent is running", "time": "2025-03-01T10:01:00+00:00"}]},
                "disks": [{"name": f"{name}_OsDisk_1", "statuses": [
                    {"code": "ProvisioningState/succeeded", "level": "Info",
                     "displayStatus": "Provisioning succeeded", "time": "2025-03-01T09:58:00+00:00"}]}],
                "hyperVGeneration": "V2",
                "statuses": statuses,
            },
            "timeCreated": "2025-02-20T08:00:00.0000000+00:00",
        },
    }
    props = body["properties"]
    if os_type == "Windows":
        props["storageProfile"]["imageReference"] = {
            "publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": "2022-datacenter-azure-edition",
            "version": "latest", "exactVersion": "20348.3207.250210"}
        props["storageProfile"]["osDisk"]["osType"] = "Windows"
        props["osProfile"].pop("linuxConfiguration")
        props["osProfile"]["windowsConfiguration"] = {"provisionVMAgent": True, "enableAutomaticUpdates": True,
                                                      "patchSettings": {"patchMode": "AutomaticByOS"}}
        props["instanceView"].update(osName="Windows Server 2022 Datacenter Azure Edition", osVersion="10.0.20348")
    if license_type:
        props["licenseType"] = license_type
    if priority:
        props["priority"] = priority
        if priority == "Spot":
            props["evictionPolicy"] = "Deallocate"
            props["billingProfile"] = {"maxPrice": -1.0}
    return body


def arm_error(status: int, code: str, message: str, headers: dict | None = None) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message}}, headers)


AUTH_401 = arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.", {
    "WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/72f988bf-0000-0000-0000-000000000000", '
                        'error="invalid_token", error_description="The access token is invalid."'})
AUTH_403 = arm_error(403, "AuthorizationFailed",
                     "The client '1c0f5b3e-0000-0000-0000-000000000000' with object id "
                     "'1c0f5b3e-0000-0000-0000-000000000000' does not have authorization to perform action "
                     "'Microsoft.Compute/virtualMachines/read' over scope "
                     f"'/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/waa-vm' "
                     "or the scope is invalid. If access was recently granted, please refresh your credentials.")
THROTTLED_429 = arm_error(429, "TooManyRequests",
                          "The request is being throttled as the limit has been reached for operation type - "
                          "Read_ObservationWindow_00:05:00. For more information, see - https://aka.ms/"
                          "throttling-limits", {"Retry-After": "17",
                                                "x-ms-ratelimit-remaining-resource":
                                                    "Microsoft.Compute/LowCostGet3Min;0"})


class VMScript:
    """Answers a VM's GET from a list of replies: power states (str) or Reply objects;
    the last one repeats."""

    def __init__(self, fake: FakeAzure, name: str, script: list, **vm_kw):
        self.script, self.name, self.vm_kw, self.i = list(script), name, vm_kw, 0
        fake.route("GET", rf"management\.azure\.com/subscriptions/{SUB}/resourceGroups/{RG}/providers/"
                          rf"Microsoft\.Compute/virtualMachines/{name}\?", self)

    def __call__(self, request, m) -> Reply:
        item = self.script[min(self.i, len(self.script) - 1)]
        self.i += 1
        if isinstance(item, Reply):
            return item
        return Reply(200, vm_body(self.name, item, **self.vm_kw))
