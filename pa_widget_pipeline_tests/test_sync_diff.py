"""Grouping a fetch into per-type frames (sync/frames.py) and planning writes (sync/diff.py)."""

from __future__ import annotations

import pytest

from pa_widget_pipeline.pa.models import WidgetFetch, parse_widgets
from pa_widget_pipeline.shopify.models import ExistingMetaobject
from pa_widget_pipeline.sync.contract import DEFAULT_METAOBJECT_TYPES, TYPE_KEYS
from pa_widget_pipeline.sync.diff import plan_writes
from pa_widget_pipeline.sync.frames import FRAME_COLUMNS, group_widgets
from pa_widget_pipeline.sync.mapping import metaobject_handle, widget_fields


def raw_widget(wid: str, type_: int = 1, **extra) -> dict:
    return {"id": wid, "type": type_, "name": f"Widget {wid}", "isActive": True, "numberOfSlots": 4,
            "updatedAt": "2025-03-02T22:41:00Z", **extra}


def fetch_of(raws: list, *, complete: bool = True, store: str = "demo") -> WidgetFetch:
    widgets, rejects = parse_widgets(raws)
    return WidgetFetch(store=store, website_id="site-1", widgets=widgets, rejects=rejects, complete=complete)


def assert_every_widget_placed(grouped) -> None:
    assert grouped.total == sum(grouped.counts.values()) + len(grouped.skipped) + len(grouped.failed)


# ---------------------------------------------------------------- grouping

def test_synced_types_go_to_their_frames_and_others_are_skipped():
    raws = [raw_widget("r1", 1), raw_widget("m1", 6), raw_widget("b1", 5), raw_widget("r2", 1),
            raw_widget("modal", 2), raw_widget("odd", 42)]
    grouped = group_widgets(fetch_of(raws))
    assert grouped.counts == {"recommendation": 2, "merchandising": 1, "bundle": 1}
    assert grouped.frames["recommendation"]["widget_id"].tolist() == ["r1", "r2"]
    assert grouped.frames["bundle"]["pa_type"].tolist() == [5]
    assert sorted((s.widget_id, s.type, s.type_name) for s in grouped.skipped) == [
        ("modal", 2, "Modal"), ("odd", 42, "42")]
    assert grouped.failed == []
    assert grouped.total == 6
    assert_every_widget_placed(grouped)


def test_frame_rows_carry_handle_fields_and_hash():
    grouped = group_widgets(fetch_of([raw_widget("R-1")]))
    frame = grouped.frames["recommendation"]
    assert list(frame.columns) == list(FRAME_COLUMNS)
    row = frame.iloc[0]
    assert row["handle"] == "pa-r-1"
    assert row["fields"]["pa_widget_id"] == "R-1"
    assert row["sync_hash"] == row["fields"]["sync_hash"]


def test_empty_types_get_empty_frames_with_the_columns():
    grouped = group_widgets(fetch_of([raw_widget("m1", 6)]))
    for key in ("recommendation", "bundle"):
        assert len(grouped.frames[key]) == 0
        assert list(grouped.frames[key].columns) == list(FRAME_COLUMNS)
    assert set(grouped.frames) == set(TYPE_KEYS)


def test_rejects_and_mapping_errors_fail_with_widget_field_and_reason():
    raws = [raw_widget("ok", 1), raw_widget("blank", 6, name=""), {"id": "badtype", "type": "one", "name": "x"},
            raw_widget("nl", 5, location="a\nb"), "not a dict"]
    grouped = group_widgets(fetch_of(raws))
    by_id = {e.widget_id: e for e in grouped.failed}
    assert set(by_id) == {"blank", "badtype", "nl", None}
    assert (by_id["blank"].code, by_id["blank"].type) == ("BLANK", "merchandising")
    assert "'name'" in by_id["blank"].message
    assert (by_id["nl"].code, by_id["nl"].type) == ("INVALID_VALUE", "bundle")
    assert "'location'" in by_id["nl"].message
    assert by_id["badtype"].code == "INVALID_WIDGET" and "'type'" in by_id["badtype"].message
    assert grouped.counts == {"recommendation": 1, "merchandising": 0, "bundle": 0}
    assert grouped.total == 5
    assert_every_widget_placed(grouped)
    # Failed widgets PA still has keep their metaobjects: their handles are protected from deletion.
    assert "pa-blank" in grouped.keep_handles_for("merchandising")
    assert "pa-nl" in grouped.keep_handles_for("bundle")
    assert all("pa-badtype" in grouped.keep_handles_for(k) for k in TYPE_KEYS)  # type unknown: every type


def test_widgets_sharing_a_handle_both_fail():
    grouped = group_widgets(fetch_of([raw_widget("AB_1"), raw_widget("ab.1"), raw_widget("other")]))
    dup = [e for e in grouped.failed if e.code == "DUPLICATE_HANDLE"]
    assert sorted(e.widget_id for e in dup) == ["AB_1", "ab.1"]
    assert all("pa-ab-1" in e.message for e in dup)
    assert grouped.frames["recommendation"]["widget_id"].tolist() == ["other"]
    assert "pa-ab-1" in grouped.keep_handles_for("recommendation")
    assert_every_widget_placed(grouped)


def test_same_handle_in_different_metaobject_types_is_not_a_duplicate():
    grouped = group_widgets(fetch_of([raw_widget("X", 1), raw_widget("x", 5)]))
    assert grouped.failed == []
    assert grouped.counts == {"recommendation": 1, "merchandising": 0, "bundle": 1}
    # ...but it is when the store maps both types to one metaobject type.
    shared = group_widgets(fetch_of([raw_widget("X", 1), raw_widget("x", 5)]),
                           {"recommendation": "pa_widget", "bundle": "pa_widget"})
    assert sorted(e.code for e in shared.failed) == ["DUPLICATE_HANDLE", "DUPLICATE_HANDLE"]
    assert shared.metaobject_types["merchandising"] == DEFAULT_METAOBJECT_TYPES["merchandising"]


def test_unknown_type_key_in_metaobject_types_is_refused():
    with pytest.raises(ValueError, match="demo"):
        group_widgets(fetch_of([]), {"carousel": "x"})


def test_summary_is_json_able_and_counts():
    import json

    grouped = group_widgets(fetch_of([raw_widget("r1"), raw_widget("s", 3), raw_widget("e", 1, name="")],
                                     complete=False))
    summary = json.loads(json.dumps(grouped.summary()))
    assert summary["complete"] is False
    assert summary["counts"]["recommendation"] == 1
    assert summary["skipped_by_type"] == {"Search Preview": 1}
    assert summary["failed_by_code"] == {"BLANK": 1}
    assert summary["total"] == 3


def test_fifty_thousand_widgets_group_into_frames():
    raws = [raw_widget(f"w{i:05d}", (1, 6, 5, 2)[i % 4], slots=[{"position": 1}]) for i in range(50_000)]
    grouped = group_widgets(fetch_of(raws))
    assert grouped.counts == {"recommendation": 12_500, "merchandising": 12_500, "bundle": 12_500}
    assert len(grouped.skipped) == 12_500
    assert grouped.frames["bundle"]["handle"].is_unique
    assert_every_widget_placed(grouped)


# ---------------------------------------------------------------- planning

def frame_for(ids: list[str], **extra):
    return group_widgets(fetch_of([raw_widget(i, 1, **extra) for i in ids])).frames["recommendation"]


def existing_for(ids: list[str], hash_of=None) -> list[ExistingMetaobject]:
    out = []
    for i in ids:
        h = hash_of(i) if hash_of else widget_fields(
            parse_widgets([raw_widget(i, 1)])[0][0])["sync_hash"]
        out.append(ExistingMetaobject(id=f"gid://shopify/Metaobject/{i}", handle=metaobject_handle(i), sync_hash=h))
    return out


def test_same_hash_unchanged_new_created_changed_updated():
    existing = existing_for(["same"]) + existing_for(["changed"], hash_of=lambda i: "stale") + \
        [ExistingMetaobject(id="gid://m/nohash", handle="pa-nohash-x", sync_hash=None)]
    frame = frame_for(["same", "changed", "new", "nohash-x"])
    plan = plan_writes(frame, existing, fetch_complete=True, allow_mass_delete=False)
    assert plan.unchanged == ["pa-same"]
    assert [i.handle for i in plan.creates] == ["pa-new"]
    assert sorted(i.handle for i in plan.updates) == ["pa-changed", "pa-nohash-x"]
    assert plan.creates[0].fields["pa_widget_id"] == "new"
    assert plan.deletes == [] and plan.delete_refused is None


def test_gone_pa_metaobjects_are_deleted_and_others_untouched():
    frame = frame_for(["keep"])
    existing = existing_for(["keep", "gone"]) + [
        ExistingMetaobject(id="gid://m/manual", handle="homepage-banner", sync_hash=None),
        ExistingMetaobject(id="gid://m/manual2", handle="pa_not_ours", sync_hash="x"),
    ]
    plan = plan_writes(frame, existing, fetch_complete=True, allow_mass_delete=False)
    assert [m.handle for m in plan.deletes] == ["pa-gone"]
    touched = {i.handle for i in plan.writes} | set(plan.unchanged) | {m.handle for m in plan.deletes}
    assert "homepage-banner" not in touched and "pa_not_ours" not in touched
    assert plan.existing_managed == 2


def test_no_deletes_when_the_fetch_is_incomplete():
    plan = plan_writes(frame_for(["a"]), existing_for(["a", "b", "c"]), fetch_complete=False,
                       allow_mass_delete=True)
    assert plan.deletes == []
    assert plan.delete_refused is not None and "fetch incomplete" in plan.delete_refused
    assert "2" in plan.delete_refused
    assert plan.unchanged == ["pa-a"]  # writes are still planned


def test_keep_handles_are_never_deleted():
    plan = plan_writes(frame_for(["a"]), existing_for(["a", "failed-now"]), fetch_complete=True,
                       allow_mass_delete=False, keep_handles={"pa-failed-now"})
    assert plan.deletes == []


def ids(n: int, prefix: str = "w") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


@pytest.mark.parametrize("existing_n, keep_n, refused", [
    (20, 10, False),   # 10 deletes: not more than 10
    (21, 10, True),    # 11 of 21: more than 10 and more than half
    (22, 11, False),   # 11 of 22: exactly half, not more -> allowed
    (22, 10, True),    # 12 of 22: more than half and more than 10
    (11, 0, True),     # 11 of 11
    (10, 0, False),    # 10 of 10: all, but not more than 10
    (100, 89, False),  # 11 of 100: more than 10 but not more than half
])
def test_mass_delete_guard_boundaries(existing_n, keep_n, refused):
    all_ids = ids(existing_n)
    plan = plan_writes(frame_for(all_ids[:keep_n]), existing_for(all_ids), fetch_complete=True,
                       allow_mass_delete=False)
    to_delete = existing_n - keep_n
    if refused:
        assert plan.deletes == []
        assert plan.delete_refused is not None
        assert f"{to_delete} of {existing_n}" in plan.delete_refused
    else:
        assert len(plan.deletes) == to_delete
        assert plan.delete_refused is None


def test_mass_delete_override():
    all_ids = ids(30)
    plan = plan_writes(frame_for(all_ids[:2]), existing_for(all_ids), fetch_complete=True, allow_mass_delete=True)
    assert len(plan.deletes) == 28 and plan.delete_refused is None


def test_mass_delete_guard_counts_only_pa_metaobjects():
    all_ids = ids(12)
    manual = [ExistingMetaobject(id=f"gid://m/{i}", handle=f"manual-{i}", sync_hash=None) for i in range(100)]
    plan = plan_writes(frame_for([]), existing_for(all_ids) + manual, fetch_complete=True,
                       allow_mass_delete=False)
    assert plan.deletes == [] and "12 of 12" in plan.delete_refused


def test_empty_frame_and_no_existing():
    plan = plan_writes(frame_for([]), [], fetch_complete=True, allow_mass_delete=False)
    assert (plan.creates, plan.updates, plan.unchanged, plan.deletes, plan.delete_refused) == ([], [], [], [], None)
