"""Offline strict validation of Kubernetes manifests against a CRD's `openAPIV3Schema`.

`kubectl apply` (strict field validation, kubectl's default) rejects a field that the schema does
not declare; JSON Schema validators do not (an OpenAPI v3 structural schema is not JSON Schema:
it closes objects implicitly, and it has its own `x-kubernetes-*` extensions). This walker follows
the API server's rules:

- an object admits only its `properties`, unless `additionalProperties` (a schema, or true) or
  `x-kubernetes-preserve-unknown-fields: true` says otherwise;
- `x-kubernetes-int-or-string: true` admits an integer or a string;
- `x-kubernetes-embedded-resource: true` admits `apiVersion`, `kind` and `metadata`, and the root
  `metadata` is an ObjectMeta, checked here for its common fields;
- `null` is an error unless `nullable: true` (the server would drop the field silently).

Value checks: type, enum, pattern, min/max length and items, minimum/maximum, int32/int64 range,
required, and anyOf/allOf/oneOf/not. CEL rules (`x-kubernetes-validations`) are not evaluated.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

# ObjectMeta fields a manifest may set (the API server owns the rest, such as uid).
OBJECT_META = {
    "name": {"type": "string"},
    "generateName": {"type": "string"},
    "namespace": {"type": "string"},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    "finalizers": {"type": "array", "items": {"type": "string"}},
    "ownerReferences": {"type": "array", "items": {"type": "object", "properties": {}}},
}
_META_SCHEMA = {"type": "object", "properties": OBJECT_META}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: CRDs are 25,000 lines
_INT_RANGE = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def load_crds(*paths) -> dict:
    """{(group, version, kind): openAPIV3Schema} for every served version in these CRD files."""
    out = {}
    for path in paths:
        for doc in yaml.load_all(Path(path).read_text(), Loader=_Loader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for v in spec["versions"]:
                if v.get("served", True):
                    key = (spec["group"], v["name"], spec["names"]["kind"])
                    out[key] = v["schema"]["openAPIV3Schema"]
    return out


def validate_manifest(doc: dict, crds: dict) -> list[str]:
    """Errors ("path: message") of one manifest against the CRD that serves its kind."""
    api = str(doc.get("apiVersion", ""))
    group, _, version = api.rpartition("/")
    schema = crds.get((group, version, doc.get("kind")))
    if schema is None:
        return [f"<root>: no CRD serves {api} {doc.get('kind')}"]
    return validate(doc, schema, root=True)


def validate(value, schema: dict, path: str = "", root: bool = False) -> list[str]:
    """Errors of `value` against a structural schema; empty when it would be accepted."""
    where = path or "<root>"
    if value is None:
        return [] if schema.get("nullable") else [f"{where}: null is not allowed"]
    errors = _value_checks(value, schema, where)
    if errors:
        return errors
    for sub in schema.get("allOf", []):
        errors += validate(value, sub, path)
    if "anyOf" in schema and not any(not validate(value, s, path) for s in schema["anyOf"]):
        errors.append(f"{where}: matches none of anyOf")
    if "oneOf" in schema and sum(not validate(value, s, path) for s in schema["oneOf"]) != 1:
        errors.append(f"{where}: must match exactly one of oneOf")
    if "not" in schema and not validate(value, schema["not"], path):
        errors.append(f"{where}: matches a schema under not")
    if isinstance(value, dict):
        errors += _object(value, schema, path, root)
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += validate(item, schema["items"], f"{path}[{i}]")
    return errors


def _object(value: dict, schema: dict, path: str, root: bool) -> list[str]:
    props = dict(schema.get("properties", {}))
    if root or schema.get("x-kubernetes-embedded-resource"):
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        meta = props.get("metadata")
        if meta is None or not meta.get("properties"):  # the CRD leaves ObjectMeta to the server
            props["metadata"] = _META_SCHEMA
    extra = schema.get("additionalProperties", False)
    open_ = schema.get("x-kubernetes-preserve-unknown-fields") is True or extra is True
    errors = [
        f"{path}.{name}: required field missing".lstrip(".")
        for name in schema.get("required", [])
        if name not in value
    ]
    for key, item in value.items():
        sub = f"{path}.{key}" if path else str(key)
        if key in props:
            errors += validate(item, props[key], sub)
        elif isinstance(extra, dict):
            errors += validate(item, extra, sub)
        elif not open_:
            errors.append(f"{sub}: unknown field")
    return errors


def _value_checks(value, schema: dict, where: str) -> list[str]:
    typ = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not (_is_type(value, "integer") or isinstance(value, str)):
            return [f"{where}: must be an integer or a string"]
    elif typ and not _is_type(value, typ):
        return [f"{where}: must be {typ}, not {type(value).__name__}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: does not match the pattern {schema['pattern']!r}")
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: longer than {schema['maxLength']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        fmt_lo, fmt_hi = _INT_RANGE.get(schema.get("format"), (None, None))
        lows = [b for b in (fmt_lo, schema.get("minimum")) if b is not None]
        highs = [b for b in (fmt_hi, schema.get("maximum")) if b is not None]
        if lows and value < max(lows):
            errors.append(f"{where}: below {max(lows)}")
        if highs and value > min(highs):
            errors.append(f"{where}: above {min(highs)}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{where}: more than {schema['maxItems']} items")
    return errors


def _is_type(value, typ: str) -> bool:
    if typ == "object":
        return isinstance(value, dict)
    if typ == "array":
        return isinstance(value, list)
    if typ == "string":
        return isinstance(value, str)
    if typ == "boolean":
        return isinstance(value, bool)
    if typ == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if typ == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return True
