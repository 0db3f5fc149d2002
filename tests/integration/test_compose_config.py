"""`docker compose config` on the compose stack: Compose itself parses, interpolates and
validates the file against its schema (no Docker engine needed, only the CLI plugin)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
COMPOSE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "compose"


def compose_cli() -> list[str] | None:
    """`docker compose` when the CLI has the Compose v2 plugin, else None."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    return [docker, "compose"] if probe.returncode == 0 else None


def test_docker_compose_config_accepts_the_stack(tmp_path):
    cli = compose_cli()
    if cli is None:
        pytest.skip("the Docker CLI with the Compose v2 plugin is not installed here "
                    "(tests/unit/test_compose.py checks the file's invariants without it)")
    env = tmp_path / ".env"
    env.write_text((COMPOSE_DIR / ".env.example").read_text())
    result = subprocess.run(
        [*cli, "--project-directory", str(COMPOSE_DIR), "-f", str(COMPOSE_DIR / "compose.yaml"),
         "--env-file", str(env), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    services = config["services"]
    assert services["embedding"]["deploy"]["replicas"] == 2
    assert services["gateway"]["depends_on"]["search"]["condition"] == "service_healthy"
    assert services["gateway"]["environment"]["MAGPIE_BUS"] == "kafka"
