"""sync_type against an in-memory MetaobjectWriter (sync/engine.py). The HTTP path is tested elsewhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pytest

from pa_widget_pipeline.pa.models import WidgetFetch, parse_widgets
from pa_widget_pipeline.shopify.errors import ShopifyRetriesExhausted
from pa_widget_pipeline.shopify.models import ExistingMetaobject, UpsertItem, UserError, WriteResult
from pa_widget_pipeline.sync.contract import CONTRACT_FIELDS, DefinitionCheck
from pa_widget_pipeline.sync.engine import MetaobjectWriter, TypeSyncAborted, sync_type
from pa_widget_pipeline.sync.frames import group_widgets
from pa_widget_pipeline.sync.outcome import build_history_entry

MO_TYPE = "pa_recommendation_widget"


def contract_definition() -> dict:
    return {"id": "gid://shopify/MetaobjectDefinition/1", "type": MO_TYPE, "name": "PA recommendation",
            "fieldDefinitions": [{"key": f.key, "name": f.name, "required": f.required, "type": {"name": f.type}}
                                 for f in CONTRACT_FIELDS]}


@dataclass
class FakeWriter:
    """Metaobjects of one type in a dict; fault switches per handle / per call."""

    definition: dict | None = field(default_factory=contract_definition)
    objects: dict[str, dict] = field(default_factory=dict)  # handle -> {id, fields}
    failing_handles: dict[str, str] = field(default_factory=dict)  # handle -> userError code
    failing_delete_ids: set[str] = field(default_factory=set)
    raise_on_upsert_call: int | None = None  # 1-based call number that raises
    raise_on_delete: bool = False
    calls: list[str] = field(default_factory=list)
    upsert_calls: int = 0
    next_id: int = 1000

    def add(self, handle: str, sync_hash: str | None, fields: dict | None = None) -> str:
        self.next_id += 1
        mo_id = f"gid://shopify/Metaobject/{self.next_id}"
        values = dict(fields or {})
        if sync_hash is not None:
            values["sync_hash"] = sync_hash
        self.objects[handle] = {"id": mo_id, "fields": values}
        return mo_id

    def definition_by_type(self, metaobject_type: str) -> dict | None:
        self.calls.append("definition")
        return self.definition

    def list_metaobjects(self, metaobject_type: str) -> list[ExistingMetaobject]:
        self.calls.append("list")
        return [ExistingMetaobject(id=o["id"], handle=h, sync_hash=o["fields"].get("sync_hash"))
                for h, o in self.objects.items()]

    def upsert_metaobjects(self, metaobject_type, items: list[UpsertItem], *, on_progress=None) -> list[WriteResult]:
        self.calls.append("upsert")
        self.upsert_calls += 1
        if self.raise_on_upsert_call == self.upsert_calls:
            raise ShopifyRetriesExhausted("demo", "503 outlasted the retry budget")
        out = []
        for n, item in enumerate(items, 1):
            code = self.failing_handles.get(item.handle)
            if code:
                out.append(WriteResult(key=item.handle, ok=False,
                                       errors=(UserError(code=code, message=f"{code.lower()} problem",
                                                         field=("metaobject", "fields")),)))
            else:
                if item.handle in self.objects:
                    self.objects[item.handle]["fields"].update(item.fields)
                else:
                    self.add(item.handle, None, item.fields)
                out.append(WriteResult(key=item.handle, ok=True, metaobject_id=self.objects[item.handle]["id"]))
            if on_progress:
                on_progress(n, len(items))
        return out

    def delete_metaobjects(self, ids: list[str], *, on_progress=None) -> list[WriteResult]:
        self.calls.append("delete")
        if self.raise_on_delete:
            raise ShopifyRetriesExhausted("demo", "504 outlasted the retry budget")
        out = []
        for mo_id in ids:
            if mo_id in self.failing_delete_ids:
                out.append(WriteResult(key=mo_id, ok=False, errors=(UserError("RECORD_NOT_FOUND", "gone"),)))
                continue
            handle = next(h for h, o in self.objects.items() if o["id"] == mo_id)
            del self.objects[handle]
            out.append(WriteResult(key=mo_id, ok=True, metaobject_id=mo_id))
            if on_progress:
                on_progress(len(out), len(ids))
        return out

    def writes(self) -> int:
        return sum(c in ("upsert", "delete") for c in self.calls)


def grouping(ids: list[str], **extra):
    widgets, rejects = parse_widgets([{"id": i, "type": 1, "name": f"Widget {i}", **extra} for i in ids])
    return group_widgets(WidgetFetch(store="demo", website_id="site", widgets=widgets, rejects=rejects,
                                     complete=True))


def frame(ids: list[str], **extra):
    return grouping(ids, **extra).frames["recommendation"]


def run(writer: FakeWriter, ids: list[str], **kw):
    kw.setdefault("fetch_complete", True)
    return sync_type(store="demo", type_key="recommendation", metaobject_type=MO_TYPE, frame=frame(ids),
                     client=writer, **kw)


def in_sync_writer(ids: list[str]) -> FakeWriter:
    writer = FakeWriter()
    run(writer, ids)
    writer.calls.clear()
    return writer


def test_fake_satisfies_the_protocol():
    assert isinstance(FakeWriter(), MetaobjectWriter)


def test_first_sync_creates_everything():
    writer = FakeWriter()
    result = run(writer, ["a", "b", "c"])
    assert (result.created, result.updated, result.unchanged, result.failed, result.synced) == (3, 0, 0, 0, 3)
    assert set(writer.objects) == {"pa-a", "pa-b", "pa-c"}
    assert writer.objects["pa-a"]["fields"]["pa_widget_id"] == "a"
    assert result.check is not None and result.check.passed
    assert result.total == result.synced + result.unchanged + result.failed


def test_second_sync_is_unchanged_and_writes_nothing():
    writer = in_sync_writer(["a", "b"])
    result = run(writer, ["a", "b"])
    assert (result.unchanged, result.synced) == (2, 0)
    assert writer.writes() == 0


def test_changed_widget_is_updated_and_gone_widget_deleted():
    writer = in_sync_writer(["a", "b", "c"])
    manual_id = writer.add("homepage-hero", None, {"name": "manual"})
    changed = frame(["a", "b"], location="cart")  # every hash changes
    result = sync_type(store="demo", type_key="recommendation", metaobject_type=MO_TYPE,
                       frame=frame(["a"]), client=writer, fetch_complete=True)
    assert (result.unchanged, result.deleted) == (1, 2)
    assert set(writer.objects) == {"pa-a", "homepage-hero"}
    assert writer.objects["homepage-hero"]["id"] == manual_id
    result = sync_type(store="demo", type_key="recommendation", metaobject_type=MO_TYPE, frame=changed,
                       client=writer, fetch_complete=True)
    assert (result.created, result.updated, result.unchanged) == (1, 1, 0)
    assert writer.objects["pa-a"]["fields"]["location"] == "cart"


def test_per_widget_user_errors_are_mapped_back():
    writer = FakeWriter(failing_handles={"pa-b": "TOO_LONG", "pa-c": "INTERNAL_ERROR"})
    result = run(writer, ["a", "b", "c", "d"])
    assert (result.synced, result.failed) == (2, 2)
    by_id = {e.widget_id: e for e in result.errors}
    assert set(by_id) == {"b", "c"}
    assert by_id["b"].code == "TOO_LONG" and by_id["b"].type == "recommendation"
    assert "too_long problem" in by_id["b"].message and "metaobject.fields" in by_id["b"].message
    assert by_id["c"].code == "INTERNAL_ERROR"
    assert set(writer.objects) == {"pa-a", "pa-d"}


def test_definition_mismatch_writes_nothing_and_fails_every_widget():
    definition = contract_definition()
    definition["fieldDefinitions"] = [f for f in definition["fieldDefinitions"] if f["key"] != "slots"]
    writer = FakeWriter(definition=definition)
    result = run(writer, ["a", "b"])
    assert writer.calls == ["definition"]
    assert writer.objects == {}
    assert result.failed == 2 and result.synced == 0
    assert {e.code for e in result.errors} == {"DEFINITION_MISMATCH"}
    assert all("slots" in e.message for e in result.errors)
    assert result.check is not None and not result.check.passed


def test_missing_definition_and_a_given_check():
    result = run(FakeWriter(definition=None), ["a"])
    assert result.failed == 1 and "does not exist" in result.errors[0].message
    # A check computed by the caller is used as is: the client is not asked again.
    writer = FakeWriter()
    bad = DefinitionCheck(metaobject_type=MO_TYPE, exists=True, wrong_types=(("name", "single_line_text_field",
                                                                               "multi_line_text_field"),))
    result = run(writer, ["a"], check=bad)
    assert "definition" not in writer.calls and writer.writes() == 0 and result.failed == 1


def test_definition_mismatch_with_no_widgets_still_reports():
    result = run(FakeWriter(definition=None), [])
    assert result.failed == 0 and result.check_failed
    assert [e.code for e in result.errors] == ["DEFINITION_MISMATCH"] and result.errors[0].widget_id is None


def test_dry_run_writes_nothing_and_reports_the_plan():
    writer = in_sync_writer(["a", "b", "c", "gone"])
    result = run(writer, ["a", "b", "new"], dry_run=True, allow_mass_delete=True)
    assert writer.writes() == 0
    assert result.dry_run is True
    assert (result.planned_creates, result.planned_updates, result.planned_deletes, result.unchanged) == (1, 0, 2, 2)
    assert (result.created, result.updated, result.deleted) == (0, 0, 0)
    assert set(writer.objects) == {"pa-a", "pa-b", "pa-c", "pa-gone"}


def test_incomplete_fetch_deletes_nothing():
    writer = in_sync_writer(["a", "b"])
    result = run(writer, ["a"], fetch_complete=False)
    assert result.deleted == 0 and "fetch incomplete" in result.delete_refused
    assert "delete" not in writer.calls and "pa-b" in writer.objects


def test_mass_delete_refused_then_allowed():
    ids = [f"w{i}" for i in range(12)]
    writer = in_sync_writer(ids)
    result = run(writer, [])
    assert result.deleted == 0 and "12 of 12" in result.delete_refused and len(writer.objects) == 12
    result = run(writer, [], allow_mass_delete=True)
    assert result.deleted == 12 and writer.objects == {}


def test_keep_handles_protect_failed_widgets_from_deletion():
    writer = in_sync_writer(["a", "b"])
    # "b" got a blank name in PA: it fails in the grouping, so it is not in the frame, but PA still has it.
    widgets, rejects = parse_widgets([{"id": "a", "type": 1, "name": "Widget a"}, {"id": "b", "type": 1, "name": ""}])
    g = group_widgets(WidgetFetch(store="demo", website_id="site", widgets=widgets, rejects=rejects, complete=True))
    assert g.keep_handles_for("recommendation") == frozenset({"pa-b"})
    result = sync_type(store="demo", type_key="recommendation", metaobject_type=MO_TYPE,
                       frame=g.frames["recommendation"], client=writer, fetch_complete=True,
                       keep_handles=g.keep_handles_for("recommendation"))
    assert result.deleted == 0 and "pa-b" in writer.objects
    # Without the protection the same plan would delete it.
    result = sync_type(store="demo", type_key="recommendation", metaobject_type=MO_TYPE,
                       frame=g.frames["recommendation"], client=writer, fetch_complete=True)
    assert result.deleted == 1 and "pa-b" not in writer.objects


def test_failed_delete_is_counted_apart_from_widgets():
    writer = in_sync_writer(["a", "b", "c"])
    writer.failing_delete_ids = {writer.objects["pa-c"]["id"]}
    result = run(writer, ["a"])
    assert (result.deleted, result.delete_failed, result.failed) == (1, 1, 0)
    assert result.errors[0].code == "RECORD_NOT_FOUND" and "pa-c" in result.errors[0].message


def test_client_exception_during_upserts_carries_the_partial_result():
    writer = FakeWriter(raise_on_upsert_call=2)
    with pytest.raises(TypeSyncAborted) as info:
        run(writer, ["a", "b", "c", "d", "e"], chunk_size=2)
    aborted = info.value
    assert isinstance(aborted.cause, ShopifyRetriesExhausted)
    assert aborted.__cause__ is aborted.cause
    partial = aborted.partial_result
    assert partial.created == 2 and set(writer.objects) == {"pa-a", "pa-b"}
    assert partial.failed == 3
    assert sorted(e.widget_id for e in partial.errors) == ["c", "d", "e"]
    assert {e.code for e in partial.errors} == {"NOT_SYNCED"}
    assert "SHOPIFY_UNAVAILABLE" in partial.errors[0].message
    assert partial.total == partial.synced + partial.unchanged + partial.failed
    assert "demo" in str(aborted) and "delete" not in writer.calls


def test_client_exception_during_deletes_keeps_the_upserts():
    writer = in_sync_writer(["a", "b"])
    writer.raise_on_delete = True
    with pytest.raises(TypeSyncAborted) as info:
        run(writer, ["a", "new"])
    partial = info.value.partial_result
    assert (partial.created, partial.unchanged, partial.failed) == (1, 1, 0)
    assert (partial.deleted, partial.delete_failed) == (0, 1)
    assert partial.errors[0].code == "DELETE_FAILED"


def test_aborted_type_fits_the_history_invariant():
    g = grouping(["a", "b", "c"])
    writer = FakeWriter(raise_on_upsert_call=1)
    with pytest.raises(TypeSyncAborted) as info:
        sync_type(store="demo", type_key="recommendation", metaobject_type=MO_TYPE,
                  frame=g.frames["recommendation"], client=writer, fetch_complete=True)
    entry = build_history_entry(grouping=g, results=[info.value.partial_result], run_id="r", trigger="manual",
                                started_at=datetime(2025, 1, 1), run_failed=True)
    assert entry.status == "failed"
    assert entry.total == entry.synced + entry.unchanged + entry.skipped + entry.failed == 3


def test_progress_reports_phase_and_overall_counts():
    writer = in_sync_writer(["a", "b", "c", "gone"])
    seen: list[tuple[str, int, int]] = []
    run(FakeWriter(), ["x", "y", "z"], chunk_size=2, on_progress=lambda *a: seen.append(a))
    assert seen == [("upsert", 1, 3), ("upsert", 2, 3), ("upsert", 3, 3)]
    seen.clear()
    run(writer, ["a", "b", "c"], on_progress=lambda *a: seen.append(a))
    assert seen == [("delete", 1, 1)]  # nothing to upsert, one delete
    assert "pa-gone" not in writer.objects
