"""The metaobject contract: which PA types are synced, into which metaobject type, with which fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# PA widget type (integer) -> the pipeline's type key.
SYNCED_PA_TYPES: dict[int, str] = {1: "recommendation", 6: "merchandising", 5: "bundle"}
TYPE_KEYS: tuple[str, ...] = ("recommendation", "merchandising", "bundle")
DEFAULT_METAOBJECT_TYPES: dict[str, str] = {
    "recommendation": "pa_recommendation_widget",
    "merchandising": "pa_merchandising_widget",
    "bundle": "pa_bundle_widget",
}
HANDLE_PREFIX = "pa-"


@dataclass(frozen=True)
class ContractField:
    key: str
    type: str
    required: bool = False
    name: str = ""


CONTRACT_FIELDS: tuple[ContractField, ...] = (
    ContractField("pa_widget_id", "single_line_text_field", True, "PA widget id"),
    ContractField("name", "single_line_text_field", True, "Name"),
    ContractField("location", "single_line_text_field", False, "Location"),
    ContractField("is_active", "boolean", False, "Active"),
    ContractField("number_of_slots", "number_integer", False, "Number of slots"),
    ContractField("header", "json", False, "Header"),
    ContractField("slots", "json", False, "Slots"),
    ContractField("routes", "json", False, "Routes"),
    ContractField("styles", "json", False, "Styles"),
    ContractField("pa_updated_at", "date_time", False, "PA updated at"),
    ContractField("sync_hash", "single_line_text_field", False, "Sync hash"),
)
CONTRACT_KEYS: frozenset[str] = frozenset(f.key for f in CONTRACT_FIELDS)


@dataclass(frozen=True)
class DefinitionCheck:
    """Result of comparing a store's metaobject definition with the contract."""

    metaobject_type: str
    exists: bool
    missing_keys: tuple[str, ...] = ()
    wrong_types: tuple[tuple[str, str, str], ...] = ()  # (key, expected, actual)
    extra_required_keys: tuple[str, ...] = ()
    definition_id: str | None = None

    @property
    def passed(self) -> bool:
        return self.exists and not (self.missing_keys or self.wrong_types or self.extra_required_keys)

    def describe(self) -> str:
        if not self.exists:
            return f"metaobject definition {self.metaobject_type!r} does not exist"
        if self.passed:
            return f"metaobject definition {self.metaobject_type!r} matches the contract"
        parts = []
        if self.missing_keys:
            parts.append("missing fields: " + ", ".join(self.missing_keys))
        if self.wrong_types:
            parts.append("wrong types: " + ", ".join(f"{k} is {a}, expected {e}" for k, e, a in self.wrong_types))
        if self.extra_required_keys:
            parts.append("required fields the pipeline does not write: " + ", ".join(self.extra_required_keys))
        return f"metaobject definition {self.metaobject_type!r} does not match the contract: " + "; ".join(parts)


def check_definition(metaobject_type: str, definition: dict[str, Any] | None) -> DefinitionCheck:
    """Compare a `MetaobjectDefinition` (as returned by GraphQL, or None) with the contract.

    `definition["fieldDefinitions"]` is a list of `{key, required, type: {name}}`.
    """
    if definition is None:
        return DefinitionCheck(metaobject_type=metaobject_type, exists=False)
    actual = {f["key"]: f for f in definition.get("fieldDefinitions") or []}
    missing: list[str] = []
    wrong: list[tuple[str, str, str]] = []
    for spec in CONTRACT_FIELDS:
        got = actual.get(spec.key)
        if got is None:
            missing.append(spec.key)
            continue
        got_type = (got.get("type") or {}).get("name")
        if got_type != spec.type:
            wrong.append((spec.key, spec.type, str(got_type)))
    extra_required = sorted(k for k, f in actual.items() if f.get("required") and k not in CONTRACT_KEYS)
    return DefinitionCheck(
        metaobject_type=metaobject_type,
        exists=True,
        missing_keys=tuple(missing),
        wrong_types=tuple(wrong),
        extra_required_keys=tuple(extra_required),
        definition_id=definition.get("id"),
    )
