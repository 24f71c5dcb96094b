"""Generate the Migration CustomResourceDefinition from the one spec model.

``python -m skymigrate.core.crd > crds/migration.yaml`` regenerates the committed CRD. The spec schema is
pydantic's JSON schema of :class:`MigrationSpec`, rewritten into the OpenAPI v3 subset the API server calls
*structural*: ``$ref`` inlined, ``Optional[X]`` turned into ``X`` with ``nullable: true``,
numeric ``exclusiveMinimum`` turned into the boolean form, defaults (also of ``default_factory`` fields) kept,
and every property required to carry a description so ``kubectl explain`` documents the whole API.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema
from skymigrate.core.spec import MigrationSpec

GROUP = "skymigrate.io"
VERSION = "v1alpha1"
KIND = "Migration"
PLURAL = "migrations"
SINGULAR = "migration"
SHORT_NAMES = ["mig"]
CRD_NAME = f"{PLURAL}.{GROUP}"
API_VERSION = f"{GROUP}/{VERSION}"

Schema = dict[str, Any]

# JSON-schema keywords that have no place (or no use) in a CRD schema. Unknown fields are pruned by
# the API server (or rejected with kubectl's strict field validation), which covers extra="forbid".
_DROP = frozenset({"title", "additionalProperties", "$defs", "examples"})
# Everything else must be a keyword the API server understands; anything new fails generation loudly.
_KEEP = frozenset(
    {
        "description", "type", "nullable", "format", "enum", "default", "multipleOf",
        "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "minLength", "maxLength", "pattern",
        "minItems", "maxItems", "uniqueItems", "items", "required", "properties", "x-kubernetes-validations",
    }
)  # fmt: skip


class SchemaError(ValueError):
    """The model cannot be expressed as a structural CRD schema (e.g. a field without a description)."""


class _WithFactoryDefaults(GenerateJsonSchema):
    """Also emit defaults of ``default_factory`` fields, as the smallest manifest fragment that yields them.

    A nested object needs a default of its own (often ``{}``) for the API server to apply the defaults of
    its properties when the user leaves the whole object out.
    """

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().get_default_value(schema)
        value = factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return value.model_dump(by_alias=True, mode="json", exclude_defaults=True)
        return value if value is not None else NoDefault


def _structural(node: Schema, defs: Schema, path: str) -> Schema:
    """One JSON-schema node -> a structural OpenAPI v3 node (recursively)."""
    node = copy.deepcopy(node)
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        options = [o for o in any_of if o.get("type") != "null"]
        if len(options) != 1:
            raise SchemaError(f"{path}: unions other than Optional[X] have no structural form")
        if node.get("default", NoDefault) is None:
            del node["default"]  # None means unset: the field is simply optional
        # Null is accepted and kept; CEL's has() is false for it, so it means "unset" there as in Python.
        node = {**options[0], **node, "nullable": True}
    ref = node.pop("$ref", None)
    if ref is not None:
        # The field's own description and default win over the referenced class's.
        node = {**copy.deepcopy(defs[ref.rsplit("/", 1)[-1]]), **node}
    for bound, strict in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(node.get(strict), (int, float)) and not isinstance(node.get(strict), bool):
            node[bound] = node.pop(strict)
            node[strict] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    out: Schema = {k: v for k, v in node.items() if k not in _DROP}
    unknown = set(out) - _KEEP
    if unknown:
        raise SchemaError(f"{path}: no CRD form for {sorted(unknown)}")
    if "x-kubernetes-validations" in out:
        out["x-kubernetes-validations"] = [
            {"rule": r["rule"], "message": r["message"]} for r in out["x-kubernetes-validations"]
        ]
    if "properties" in node:
        props: Schema = {}
        for name, sub in node["properties"].items():
            child = _structural(sub, defs, f"{path}.{name}")
            if not child.get("description"):
                raise SchemaError(f"{path}.{name} has no description: add Field(description=...)")
            props[name] = child
        out["properties"] = props
    if "items" in node:
        out["items"] = _structural(node["items"], defs, f"{path}[]")
    if out.get("type") == "object" and "properties" not in out:
        raise SchemaError(f"{path}: free-form objects are not structural")
    return _ordered(out)


_KEY_ORDER = (
    "description",
    "type",
    "nullable",
    "format",
    "enum",
    "default",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "items",
    "required",
    "properties",
    "x-kubernetes-validations",
)


def _ordered(node: Schema) -> Schema:
    """Stable, readable key order (description first, properties last) for the committed YAML."""
    rank = {k: i for i, k in enumerate(_KEY_ORDER)}
    return dict(sorted(node.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def structural_schema(model: type[BaseModel], path: str = "spec") -> Schema:
    """The structural OpenAPI schema of a pydantic model; raises SchemaError where that is impossible."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_WithFactoryDefaults)
    return _structural(raw, raw.get("$defs", {}), path)


# Left unset by the API server when a manifest omits them, so the operator can apply its own
# installation-wide defaults (the chart's defaultLauncher and stateStore values).
OPERATOR_DEFAULTED = ("launcher", "stateStore")


def spec_schema() -> Schema:
    """The schema of ``.spec``, from :class:`MigrationSpec`."""
    schema = structural_schema(MigrationSpec)
    for name in OPERATOR_DEFAULTED:
        schema["properties"][name].pop("default", None)
    return schema


def _text(description: str) -> Schema:
    return {"type": "string", "description": description}


def status_schema() -> Schema:
    """``.status`` is written by the operator only; the fields the printer columns read are documented here,
    everything else is kept as written (the operator's status model owns its exact shape)."""
    return {
        "description": "Observed state, written by the operator: phase, totals, progress, speed, ETA, "
        "per-node entries and conditions.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {
            "phase": _text("Pending, Planning, Launching, Running, Verifying, Succeeded, Failed or Cancelled."),
            "progressText": _text(
                "Percent of bytes moved (verified plus in flight), e.g. 42.0%; verifiedPercent counts verified only."
            ),
            "objectsText": _text("Objects done of the total, e.g. 150/500."),
            "speedText": _text("Recent cluster throughput, e.g. 1.2 GB/s."),
            "eta": {
                "description": "Cluster ETA: when the slowest node is expected to finish.",
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {
                    "text": _text("Remaining time, readable, e.g. 2h 15m 30s."),
                    "completionTime": _text("Expected completion time (RFC 3339)."),
                },
            },
        },
    }


PRINTER_COLUMNS: list[Schema] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Migration phase."},
    {"name": "Progress", "type": "string", "jsonPath": ".status.progressText", "description": "Bytes done, %."},
    {"name": "Objects", "type": "string", "jsonPath": ".status.objectsText", "description": "Objects done/total."},
    {"name": "Speed", "type": "string", "jsonPath": ".status.speedText", "description": "Recent throughput."},
    {"name": "ETA", "type": "string", "jsonPath": ".status.eta.text", "description": "Cluster time remaining."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Nodes", "type": "integer", "jsonPath": ".spec.nodes", "priority": 1, "description": "Node agents."},
    # A string, not a date: kubectl prints future dates as "<invalid>".
    {
        "name": "Completion",
        "type": "string",
        "jsonPath": ".status.eta.completionTime",
        "priority": 1,
        "description": "Expected completion time.",
    },
]


def crd() -> Schema:
    """The complete apiextensions.k8s.io/v1 CustomResourceDefinition."""
    root: Schema = {
        "description": "A Migration copies every object of a source bucket (or prefix) to a target bucket on "
        "S3-compatible endpoints, sharded over node agents, verified object by object, with progress, speed "
        "and ETA in its status.",
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": _text("APIVersion of this object: skymigrate.io/v1alpha1."),
            "kind": _text("Kind of this object: Migration."),
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


HEADER = "# Generated by `python -m skymigrate.core.crd` from skymigrate.core.spec.MigrationSpec; do not edit.\n"


def render() -> str:
    """The CRD as the YAML committed in crds/migration.yaml."""
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=120, allow_unicode=True)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
