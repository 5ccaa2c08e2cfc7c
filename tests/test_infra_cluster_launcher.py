"""infra/cluster.yaml validates against the schema that Ray itself ships for cluster configs
(ray/autoscaler/ray-schema.json, checked by `ray up`), with the image as one variable."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "infra" / "cluster.yaml"
VAR = "${AURORAHASH_IMAGE}"


@pytest.fixture(scope="module")
def schema() -> dict:
    import ray.autoscaler

    s = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(s)
    return s


def _errors(config: dict, schema: dict) -> list[str]:
    v = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in v.iter_errors(config)]


def _rendered(image: str) -> dict:
    """The config as `envsubst '$AURORAHASH_IMAGE'` renders it (only that variable)."""
    return yaml.safe_load(CLUSTER.read_text().replace(VAR, image))


def test_cluster_yaml_validates_against_rays_schema(schema):
    config = _rendered("registry.example.org/aurorahash:0.1.0")
    assert _errors(config, schema) == []
    assert config["docker"]["head_image"] == "registry.example.org/aurorahash:0.1.0-cpu"
    assert config["docker"]["worker_image"] == "registry.example.org/aurorahash:0.1.0-cu128"
    # other shell variables are left to the launcher (envsubst is told to expand only this one)
    assert "$RAY_HEAD_IP" in " ".join(config["worker_start_ray_commands"])


def test_ray_up_accepts_it(schema):
    """What `ray up` runs before it starts anything: defaults, the Docker checks, the schema."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(_rendered("registry.example.org/aurorahash:0.1.0")))


def test_the_image_is_only_the_variable():
    text = CLUSTER.read_text()
    assert "aurorahash:latest" not in text
    docker = yaml.safe_load(text)["docker"]
    assert "image" not in docker
    assert docker["head_image"] == f"{VAR}-cpu" and docker["worker_image"] == f"{VAR}-cu128"


def test_token_auth_is_on_in_every_container():
    config = yaml.safe_load(CLUSTER.read_text())
    opts = config["docker"]["run_options"]
    assert "--env RAY_AUTH_MODE=token" in opts
    path = next(o for o in opts if "RAY_AUTH_TOKEN_PATH=" in o).split("=", 1)[1]
    mount = str(Path(path).parent)
    assert mount in config["file_mounts"]  # the token file is put where Ray reads it


def test_schema_rejects_unknown_fields(schema):
    """The check is not vacuous: Ray's schema closes its objects."""
    config = _rendered("r/a:1")
    bad = copy.deepcopy(config)
    bad["docker"]["imagee"] = "x"
    assert any("imagee" in e for e in _errors(bad, schema))
    bad = copy.deepcopy(config)
    bad["available_node_types"]["gpu_worker"]["min_workers"] = "0"
    assert _errors(bad, schema)
