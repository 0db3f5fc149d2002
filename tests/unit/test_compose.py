"""The compose stack's invariants, checked on the parsed file: a broken compose.yaml fails CI
even where no Docker CLI can run `docker compose config` (tests/integration/test_compose_config.py)."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from magpie.cli.run import SERVICES, ServiceName
from magpie.common.settings import Settings

pytestmark = pytest.mark.unit
COMPOSE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "compose"
VAR = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    lines = (COMPOSE_DIR / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def interpolate(value: object, env: dict[str, str]) -> str:
    """A compose value with ${VAR}, ${VAR:-default} and ${VAR:?error} filled from `env`."""
    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if name in env:
            return env[name]
        assert op != ":?", f"{name} is required but .env.example does not set it"
        return arg or ""
    return VAR.sub(one, str(value)).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def magpie(compose) -> dict[str, dict]:
    """The Magpie services by the `magpie run` target they run."""
    out = {}
    for name, svc in compose["services"].items():
        cmd = svc.get("command") or []
        if cmd[:2] == ["magpie", "run"]:
            out[cmd[2]] = {**svc, "_name": name}
    return out


def test_every_magpie_service_runs_with_an_image_a_healthcheck_and_its_port(magpie):
    assert set(magpie) == {s.value for s in ServiceName}
    env = env_example()
    for target, svc in magpie.items():
        assert svc.get("image") or svc.get("build"), target
        build = svc["build"]
        dockerfile = (COMPOSE_DIR / build["context"] / build["dockerfile"]).resolve()
        assert dockerfile.is_file(), dockerfile
        test = svc["healthcheck"]["test"]
        url = re.search(r"http://127\.0\.0\.1:(\d+)/ready", " ".join(test))
        assert url, (target, test)
        setting = "port" if target == "gateway" else SERVICES[ServiceName(target)].port_setting
        port = interpolate(svc["environment"][f"MAGPIE_{setting.upper()}"], env)
        assert url.group(1) == port, (target, "healthcheck probes another port than it listens on")


def test_every_magpie_setting_exists_and_validates(magpie):
    env = env_example()
    for target, svc in magpie.items():
        values = {k: interpolate(v, env) for k, v in svc["environment"].items()}
        unknown = [k for k in values if k.removeprefix("MAGPIE_").lower() not in Settings.model_fields]
        assert not unknown, (target, unknown)
        settings = Settings(_env_file=None, **{k.removeprefix("MAGPIE_").lower(): v
                                               for k, v in values.items()})
        assert settings.bus.value == "kafka" and settings.index.value == "qdrant"


def test_every_address_a_service_is_given_names_a_service_of_the_stack(compose, magpie):
    env, services = env_example(), compose["services"]
    values = {k: interpolate(v, env) for k, v in magpie["gateway"]["environment"].items()}
    for key in ("MAGPIE_SEARCH_URL", "MAGPIE_ANALYTICS_URL", "MAGPIE_QDRANT_URL",
                "MAGPIE_CLICKHOUSE_URL", "MAGPIE_DATABASE_URL"):
        assert urlsplit(values[key]).hostname in services, key
    for key in ("MAGPIE_KAFKA_BOOTSTRAP", "MAGPIE_S3_ENDPOINT"):
        assert values[key].split(":")[0] in services, key
    # The URLs of search and analytics reach the ports those services listen on.
    for target, key in (("search", "MAGPIE_SEARCH_URL"), ("analytics", "MAGPIE_ANALYTICS_URL")):
        listens = magpie[target]["environment"][f"MAGPIE_{target.upper()}_PORT"]
        assert urlsplit(values[key]).port == int(listens)


def test_start_order_and_volumes_are_consistent(compose):
    services, volumes = compose["services"], set(compose.get("volumes") or {})
    for name, svc in services.items():
        for target, cond in (svc.get("depends_on") or {}).items():
            assert target in services, (name, target)
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[target], (name, target)
            else:
                assert cond["condition"] in ("service_started", "service_completed_successfully")
        for mount in svc.get("volumes") or ():
            source = mount.split(":", 1)[0]
            assert source.startswith((".", "/")) or source in volumes, (name, source)
    # No cycles: a topological order exists.
    order, pending = [], {n: set(s.get("depends_on") or {}) for n, s in services.items()}
    while pending:
        ready = [n for n, deps in pending.items() if deps <= set(order)]
        assert ready, f"depends_on cycle among {sorted(pending)}"
        order += ready
        for n in ready:
            del pending[n]
    assert order.index("gateway") > max(order.index(s) for s in ("search", "analytics", "kafka"))


def test_engines_are_all_there_and_workers_scale(compose):
    images = {n: s.get("image", "") for n, s in compose["services"].items()}
    for engine, image in (("kafka", "apache/kafka"), ("qdrant", "qdrant/qdrant"),
                          ("clickhouse", "clickhouse/clickhouse-server"), ("minio", "minio/minio"),
                          ("postgres", "postgres")):
        assert images[engine].startswith(image + ":"), engine
    kafka = compose["services"]["kafka"]["environment"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    env = env_example()
    for name in ("embedding", "search"):
        assert int(interpolate(compose["services"][name]["deploy"]["replicas"], env)) >= 2


def test_env_example_sets_what_compose_requires_and_nothing_it_ignores():
    text = (COMPOSE_DIR / "compose.yaml").read_text()
    used = {m.group(1) for m in VAR.finditer(text)}
    required = {m.group(1) for m in VAR.finditer(text) if m.group(2) == ":?"}
    example = set(env_example())
    assert required <= example, required - example
    assert example <= used, example - used
