"""docker-compose.yml, Dockerfile and .dockerignore: valid, pinned, and
mounting exactly the files the other tests exercise. No Docker engine needed:
`docker-compose config` (Debian package docker-compose) validates offline."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from support.paths import REPO
from support.stack import GRAFANA_DIR, PROM_DIR
from support.tools import binary

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (REPO / "Dockerfile").read_text()


@pytest.mark.stack("docker-compose")
def test_docker_compose_config_accepts_file():
    exe = binary("docker-compose")
    if exe is None:
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    r = subprocess.run([exe, "-f", str(REPO / "docker-compose.yml"), "config", "-q"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_services():
    assert set(SERVICES) == {"runwatch", "prometheus", "alertmanager", "loki", "grafana"}


def _bind_mounts():
    for name, svc in SERVICES.items():
        for v in svc.get("volumes", []):
            src, _, rest = v.partition(":")
            if src.startswith("."):
                yield name, src, rest.split(":")[0]


@pytest.mark.parametrize("service,src,dst", list(_bind_mounts()))
def test_every_mounted_file_exists(service, src, dst):
    assert (REPO / src).exists(), f"{service}: {src} does not exist"


def test_named_volumes_for_data():
    named = set(COMPOSE["volumes"])
    for svc, path in {"prometheus": "/prometheus", "alertmanager": "/alertmanager", "loki": "/loki",
                      "grafana": "/var/lib/grafana"}.items():
        assert any(v.split(":")[0] in named and v.split(":")[1] == path for v in SERVICES[svc]["volumes"]), svc


def test_images_pinned():
    for name, svc in SERVICES.items():
        if "build" in svc:
            continue
        image = svc["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), f"{name}: image {image} not pinned to a version"


def test_only_grafana_publishes_a_port():
    published = {n for n, s in SERVICES.items() if s.get("ports")}
    assert published == {"grafana"}
    assert SERVICES["grafana"]["ports"] == ["127.0.0.1:3000:3000"]


def test_same_files_as_the_tests():
    prom = SERVICES["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prom["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    am = SERVICES["alertmanager"]
    assert "./prometheus/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro" in am["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in SERVICES["grafana"]["volumes"]


def test_targets_and_datasources_point_at_compose_services():
    targets = yaml.safe_load((PROM_DIR / "targets" / "runwatch.yml").read_text())
    assert targets == [{"targets": ["runwatch:9897"]}]
    am = yaml.safe_load((PROM_DIR / "targets" / "alertmanager.yml").read_text())
    assert am == [{"targets": ["alertmanager:9093"]}]
    ds = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "runwatch.yml").read_text())
    urls = {d["uid"]: d["url"] for d in ds["datasources"]}
    assert urls == {"prometheus": "http://prometheus:9090", "loki": "http://loki:3100",
                    "alertmanager": "http://alertmanager:9093"}
    for url in urls.values():
        host = url.split("//")[1].split(":")[0]
        assert host in SERVICES


def test_dockerfile():
    assert re.search(r"^FROM python:3\.11-slim\b", DOCKERFILE, re.M)
    user = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.M)
    assert user and not user[-1].startswith(("root", "0")), "must run as a non-root user"
    assert re.search(r"^RUN pip install \.", DOCKERFILE, re.M)
    assert "HEALTHCHECK" in DOCKERFILE and "/healthz" in DOCKERFILE
    assert re.search(r'^CMD \["demo", "--listen", "0\.0\.0\.0:9897"\]', DOCKERFILE, re.M)
    assert "EXPOSE 9897" in DOCKERFILE
    assert SERVICES["runwatch"]["build"] == "."


def test_dockerfile_copies_exist_and_are_not_ignored():
    ignore = (REPO / ".dockerignore").read_text().split()
    for line in re.findall(r"^COPY\s+(.+)$", DOCKERFILE, re.M):
        for src in line.split()[:-1]:
            assert (REPO / src).exists(), f"Dockerfile copies {src}, which does not exist"
            assert f"!{src}" in ignore or f"!{src}/" in ignore, f".dockerignore excludes {src}"
