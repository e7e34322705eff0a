"""Bring a store's metaobject definitions up to the contract without touching any field that holds data.

Creates a missing definition; adds missing contract fields only when asked; never changes a field's type and
never removes a field. What it cannot fix safely (a wrong type, an extra required field) it reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from pa_widget_pipeline.sync.contract import CONTRACT_FIELDS, ContractField, check_definition


class DefinitionWriter(Protocol):
    def definition_by_type(self, metaobject_type: str) -> dict[str, Any] | None: ...
    def create_definition(self, metaobject_type: str, name: str, fields: list[ContractField]) -> dict: ...
    def add_definition_fields(self, definition_id: str, fields: list[ContractField]) -> dict: ...


@dataclass
class DefinitionReport:
    store: str
    type_key: str
    metaobject_type: str
    action: str  # created | fields_added | matches | needs_fields | needs_attention | would_create | would_add_fields
    added_fields: list[str] = field(default_factory=list)
    missing_fields: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def ensure_definition(client: DefinitionWriter, *, store: str, type_key: str, metaobject_type: str,
                      add_missing_fields: bool = False, dry_run: bool = False) -> DefinitionReport:
    definition = client.definition_by_type(metaobject_type)
    check = check_definition(metaobject_type, definition)
    report = DefinitionReport(store=store, type_key=type_key, metaobject_type=metaobject_type, action="matches")
    if not check.exists:
        report.added_fields = [f.key for f in CONTRACT_FIELDS]
        if dry_run:
            report.action, report.message = "would_create", f"{metaobject_type}: would be created with every field"
            return report
        client.create_definition(metaobject_type, f"PA {type_key} widget", list(CONTRACT_FIELDS))
        report.action, report.message = "created", f"{metaobject_type}: created with every contract field"
        return report

    report.left_alone = [f"{k}: is {actual}, the contract wants {expected}" for k, expected, actual in check.wrong_types]
    report.left_alone += [f"{k}: required, but the pipeline does not write it" for k in check.extra_required_keys]
    missing = [f for f in CONTRACT_FIELDS if f.key in check.missing_keys]
    report.missing_fields = [f.key for f in missing]
    if missing and add_missing_fields:
        report.added_fields = report.missing_fields
        if dry_run:
            report.action = "would_add_fields"
        else:
            client.add_definition_fields(check.definition_id or "", missing)
            report.action = "fields_added"
        report.missing_fields = []
    elif missing:
        report.action = "needs_fields"

    if report.left_alone and report.action == "matches":
        report.action = "needs_attention"
    parts = []
    if report.added_fields:
        parts.append(("would add " if dry_run else "added ") + ", ".join(report.added_fields))
    if report.missing_fields:
        parts.append("missing " + ", ".join(report.missing_fields) + " (rerun with add_missing_fields to add them)")
    if report.left_alone:
        parts.append("left alone, fix by hand: " + "; ".join(report.left_alone))
    report.message = f"{metaobject_type}: " + ("; ".join(parts) if parts else "matches the contract")
    return report
