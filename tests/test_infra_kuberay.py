"""The KubeRay manifests apply: strict validation against the KubeRay v1.6.0 and v1.7.0 CRDs, the
image is a kustomize parameter, S3 credentials come from secrets, Ray token auth is on."""

from __future__ import annotations

import copy
import functools
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from openapi_strict import load_crds, validate, validate_manifest

REPO = Path(__file__).resolve().parents[1]
KUBERAY = REPO / "infra" / "kuberay"
CRD_DIR = REPO.parent / "shared" / "infra" / "kuberay-crds"
if not CRD_DIR.exists():  # the checkout may live elsewhere; shared/ sits beside the project
    CRD_DIR = Path("/work/shared/infra/kuberay-crds")
KUBERAY_VERSIONS = ["v1.6.0", "v1.7.0"]
MANIFESTS = sorted(p.name for p in KUBERAY.glob("*.yaml") if p.name != "kustomization.yaml")
S3_SECRET = "aurorahash-s3-credentials"
TOKEN_SECRET = "aurorahash-ray-token"


@functools.cache
def _crds(version: str) -> dict:
    files = sorted(CRD_DIR.glob(f"{version}-*.yaml"))
    if not files:
        pytest.skip(f"no KubeRay {version} CRDs in {CRD_DIR}")
    return load_crds(*files)


def _load(name: str) -> dict:
    return yaml.safe_load((KUBERAY / name).read_text())


def _cluster_specs(doc: dict) -> list[dict]:
    spec = doc["spec"]
    return [
        spec["jobTemplate"]["rayClusterSpec"]
        if doc["kind"] == "RayCronJob"
        else spec["rayClusterSpec"]
    ]


def _containers(doc: dict) -> list[dict]:
    out = []
    for rc in _cluster_specs(doc):
        groups = [rc["headGroupSpec"], *rc.get("workerGroupSpecs", [])]
        for g in groups:
            out += g["template"]["spec"]["containers"]
    return out


def test_every_manifest_is_checked():
    assert MANIFESTS == [
        "raycronjob-nightly-ingest.yaml",
        "rayjob-export.yaml",
        "rayjob-map-benchmark.yaml",
    ]


@pytest.mark.parametrize("version", KUBERAY_VERSIONS)
@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_validates_strictly_against_kuberay_crd(name, version):
    assert validate_manifest(_load(name), _crds(version)) == []


# ------------------------------------------------------- the walker rejects what kubectl rejects


@pytest.fixture(scope="module")
def cron():
    return _load("raycronjob-nightly-ingest.yaml")


def test_fields_the_raycronjob_crd_lacks_are_rejected(cron):
    forbid = copy.deepcopy(cron)
    forbid["spec"]["concurrencyPolicy"] = "Forbid"
    tz = copy.deepcopy(cron)
    tz["spec"]["timeZone"] = "Etc/UTC"
    for version in KUBERAY_VERSIONS:
        assert validate_manifest(forbid, _crds(version)) == [
            "spec.concurrencyPolicy: unknown field"
        ]
    assert validate_manifest(tz, _crds("v1.6.0")) == ["spec.timeZone: unknown field"]
    assert validate_manifest(tz, _crds("v1.7.0")) == []  # 1.7.0 added spec.timeZone


@pytest.mark.parametrize(
    "edit, error",
    [
        (lambda s: s["workerGroupSpecs"][0].update(replicas="4"), "replicas: must be integer"),
        (lambda s: s["workerGroupSpecs"][0].pop("groupName"), "groupName: required field"),
        (
            lambda s: s["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
            "rayStartParams.num-cpus: must be string",
        ),
        (
            lambda s: s["headGroupSpec"]["template"]["spec"]["containers"][0].update(imagePull="x"),
            "containers[0].imagePull: unknown field",
        ),
        (lambda s: s["authOptions"].update(mode="on"), "authOptions.mode: 'on' is not one of"),
        (
            lambda s: s["headGroupSpec"]["template"]["metadata"].update(label={}),
            "template.metadata.label: unknown field",
        ),
    ],
)
def test_nested_mistakes_are_rejected_with_their_path(cron, edit, error):
    doc = copy.deepcopy(cron)
    spec = doc["spec"]["jobTemplate"]["rayClusterSpec"]
    spec["headGroupSpec"]["template"].setdefault("metadata", {})
    edit(spec)
    errors = validate_manifest(doc, _crds("v1.7.0"))
    assert len(errors) == 1 and error in errors[0], errors


def test_quantities_are_int_or_string_and_metadata_is_object_meta(cron):
    doc = copy.deepcopy(cron)
    limits = _containers(doc)[0]["resources"]["limits"]
    limits.update(cpu=4, memory="16Gi")  # both forms of a quantity
    assert validate_manifest(doc, _crds("v1.6.0")) == []
    limits["memory"] = "16GB"  # not a quantity: the CRD's pattern rejects it
    (error,) = validate_manifest(doc, _crds("v1.6.0"))
    assert error.startswith(
        "spec.jobTemplate.rayClusterSpec.headGroupSpec.template.spec.containers[0].resources"
        ".limits.memory: does not match the pattern"
    )
    limits.update(cpu=4.5, memory="16Gi")
    assert validate_manifest(doc, _crds("v1.6.0")) == [
        "spec.jobTemplate.rayClusterSpec.headGroupSpec.template.spec.containers[0].resources"
        ".limits.cpu: must be an integer or a string"
    ]
    doc = copy.deepcopy(cron)
    doc["metadata"]["labelz"] = {"a": "b"}
    assert validate_manifest(doc, _crds("v1.6.0")) == ["metadata.labelz: unknown field"]


def test_walker_extensions_and_null():
    schema = {
        "type": "object",
        "properties": {
            "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "map": {"type": "object", "additionalProperties": {"type": "integer"}},
            "maybe": {"type": "string", "nullable": True},
            "never": {"type": "string"},
        },
    }
    ok = {"open": {"any": {"thing": [1]}}, "map": {"a": 1}, "maybe": None}
    assert validate(ok, schema) == []
    assert validate({"map": {"a": "1"}}, schema) == ["map.a: must be integer, not str"]
    assert validate({"never": None}, schema) == ["never: null is not allowed"]
    assert validate({"nope": 1}, schema) == ["nope: unknown field"]


# ------------------------------------------------------------------------------ image parameter


def _kustomization() -> dict:
    return yaml.safe_load((KUBERAY / "kustomization.yaml").read_text())


def test_images_are_kustomize_parameters():
    kz = _kustomization()
    assert sorted(kz["resources"]) == MANIFESTS
    names = {i["name"]: i for i in kz["images"]}
    used = {c["image"] for name in MANIFESTS for c in _containers(_load(name))}
    assert used == set(names) == {"aurorahash-cpu", "aurorahash-gpu"}
    for i in kz["images"]:
        assert i["newTag"] != "latest" and "latest" not in i["newName"]
    # GPU workers run the GPU image; the CPU-only jobs the CPU image
    for name in MANIFESTS:
        for c in _containers(_load(name)):
            gpu = "nvidia.com/gpu" in c.get("resources", {}).get("limits", {})
            assert not gpu or c["image"] == "aurorahash-gpu"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) not found")
def test_kustomize_renders_every_image_and_the_result_still_validates():
    out = subprocess.run(
        ["kubectl", "kustomize", str(KUBERAY)], capture_output=True, text=True, check=True
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert sorted(d["metadata"]["name"] for d in docs) == sorted(
        _load(n)["metadata"]["name"] for n in MANIFESTS
    )
    want = {i["name"]: f"{i['newName']}:{i['newTag']}" for i in _kustomization()["images"]}
    for doc in docs:
        original = next(_load(n) for n in MANIFESTS if _load(n)["metadata"] == doc["metadata"])
        got = [c["image"] for c in _containers(doc)]
        assert got == [want[c["image"]] for c in _containers(original)]
        for version in KUBERAY_VERSIONS:
            assert validate_manifest(doc, _crds(version)) == []


# ---------------------------------------------------------------------------- secrets and auth


@pytest.mark.parametrize("name", MANIFESTS)
def test_s3_credentials_come_from_secret_key_refs(name):
    doc = _load(name)
    for c in _containers(doc):
        env = {e["name"]: e for e in c.get("env", [])}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            ref = env[key]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": S3_SECRET, "key": key}, (c["name"], key)
        for e in env.values():  # nothing secret is written into the manifest itself
            assert "value" not in e, (c["name"], e["name"])
        assert "envFrom" not in c
    text = (KUBERAY / name).read_text()
    assert "runtimeEnvYAML" not in text  # a runtime env would override the pods' endpoint


@pytest.mark.parametrize("name", MANIFESTS)
def test_ray_token_auth_is_on(name):
    doc = _load(name)
    for rc in _cluster_specs(doc):
        assert rc["authOptions"] == {"mode": "token", "secretName": TOKEN_SECRET}
    for c in _containers(doc):
        assert not any(e["name"].startswith("RAY_AUTH") for e in c.get("env", []))


# ------------------------------------------------------------------------------------ versions


def _ray_pin() -> str:
    pins = dict(
        line.split("==")
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    return pins["ray"]


def test_ray_version_is_the_tested_one_everywhere():
    import ray

    assert _ray_pin() == ray.__version__
    for name in MANIFESTS:
        for rc in _cluster_specs(_load(name)):
            assert rc["rayVersion"] == ray.__version__


def test_readme_says_which_kuberay_each_manifest_needs():
    text = (REPO / "infra" / "README.md").read_text()
    for name in MANIFESTS:
        line = next(ln for ln in text.splitlines() if f"kuberay/{name}" in ln)
        assert "KubeRay" in line and "1.6.0" in line, line


# ------------------------------------------------------- the jobs run where the cluster is


GCS = "10.0.0.1:6379"  # Ray's job supervisor sets RAY_ADDRESS to it for a RayJob's entrypoint


def _commands(doc: dict) -> list[list[str]]:
    spec = doc["spec"]["jobTemplate"] if doc["kind"] == "RayCronJob" else doc["spec"]
    return [shlex.split(part) for part in spec["entrypoint"].split("&&")]


def _where(argv: list[str]) -> str:
    """Where the job runs its work, as the job decides it: "cluster", "local Ray" (a new
    instance on the head pod) or "this process"."""
    from jobs.cli import build_parser
    from jobs.common import ray_address
    from pipeline.codes import placement

    assert argv[0] == "aurorahash", argv
    parser, _ = build_parser(argv[1])
    args = parser.parse_args(argv[1:])
    address = ray_address(args)
    if args.job == "ingest":  # always Ray: joins the named cluster, else starts one
        return "cluster" if address else "local Ray"
    if args.job in ("search", "benchmark", "compact"):
        choice = placement.forced(args.ray, args.no_ray, address)
        if choice is None or not choice.use_ray:  # search/benchmark: the work would decide
            return "this process"
        return "cluster" if address else "local Ray"
    return "this process"  # export, check: no Ray at all


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_jobs_run_on_the_cluster(name, monkeypatch):
    """Inside a RayJob every job that can use Ray joins the cluster (RAY_ADDRESS), whatever the
    size of the work; export runs in the entrypoint's process on the head, by design (the export
    manifest has no worker group)."""
    monkeypatch.setenv("RAY_ADDRESS", GCS)
    doc = _load(name)
    where = {argv[1]: _where(argv) for argv in _commands(doc)}
    expected = {
        "raycronjob-nightly-ingest.yaml": {
            "ingest": "cluster",
            "compact": "cluster",
            "benchmark": "cluster",
        },
        "rayjob-map-benchmark.yaml": {"benchmark": "cluster"},
        "rayjob-export.yaml": {"export": "this process"},
    }[name]
    assert where == expected
    if where == {"export": "this process"}:
        assert not _cluster_specs(doc)[0].get("workerGroupSpecs")
    monkeypatch.delenv("RAY_ADDRESS")  # the check itself can fail: no cluster, no "cluster"
    assert "cluster" not in {_where(argv) for argv in _commands(doc)}
