"""docker-compose.yml parses and has every service the deploy needs, wired to one image."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_commands_and_health_checks(compose):
    services = compose["services"]
    assert {"redis", "postgres", "minio", "minio-init", "migrate", "api", "watcher", "ingest",
            "recognize", "finish"} <= set(services)
    assert services["api"]["command"][0] == "api" and "8000:8000" in services["api"]["ports"]
    assert services["watcher"]["command"][:2] == ["watch", "s3://quire/inbox/"]
    for queue in ("ingest", "recognize", "finish"):
        svc = services[queue]
        assert svc["command"][:2] == ["worker", queue]
        assert f"{queue}-1@" in " ".join(svc["healthcheck"]["test"])
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("redis", "postgres", "minio", "api"):
        assert services[name]["healthcheck"]["test"]


def test_redis_is_durable_and_never_evicts(compose):
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_recognize_reserves_a_gpu_and_settings_reach_every_role(compose):
    recognize = compose["services"]["recognize"]
    [device] = recognize["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert recognize["environment"]["QUIRE_DEVICE"] == "cuda"
    for name in ("api", "watcher", "ingest", "finish", "migrate"):
        env = compose["services"][name]["environment"]
        assert env["QUIRE_BROKER_URL"].startswith("redis://")
        assert env["QUIRE_DATABASE_URL"].startswith("postgresql")
        assert env["QUIRE_STORAGE_URL"].startswith("s3://")
    assert "mc mb -p q/quire" in " ".join(compose["services"]["minio-init"]["entrypoint"])


def _compose_command() -> list[str] | None:
    """`docker compose` (the plugin) or Debian's standalone `docker-compose`; either parses the file."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                 check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_it():
    command = _compose_command()
    if command is None:
        pytest.skip("neither the docker compose plugin nor docker-compose is installed")
    result = subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
