"""The per-store asset graph: fetch PA widgets, group them by type, write each type's metaobjects.

Thin by design: every decision (validation, mapping, diff, outcome) lives in the pure core; these
functions only move data between it, the clients and Dagster's events.
"""


from typing import Any, Iterator

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableMetadataValue,
    TableRecord,
    TableSchema,
    asset,
)

from pa_widget_pipeline.defs.partitions import stores_partitions
from pa_widget_pipeline.defs.resources import SyncOptions, WidgetSyncResource
from pa_widget_pipeline.pa.errors import PAError
from pa_widget_pipeline.pa.models import WidgetFetch
from pa_widget_pipeline.shopify.errors import ShopifyError
from pa_widget_pipeline.stores import RegistryError, StoreConfig, UnknownStoreError
from pa_widget_pipeline.sync.contract import TYPE_KEYS, DefinitionCheck, check_definition
from pa_widget_pipeline.sync.engine import TypeSyncAborted, failed_before_writes, sync_type
from pa_widget_pipeline.sync.frames import WidgetsByType, group_widgets
from pa_widget_pipeline.sync.outcome import TypeSyncResult, WidgetError

GROUP = "widget_sync"
DEFINITION_CHECK = "definition_matches"
PA_POOL = "pa_api"
MAX_ERRORS_SHOWN = 25

_ERROR_SCHEMA = TableSchema(
    columns=[
        TableColumn("widget_id", "string"),
        TableColumn("type", "string"),
        TableColumn("code", "string"),
        TableColumn("message", "string"),
    ]
)


def errors_table(errors: list[WidgetError]) -> TableMetadataValue:
    return MetadataValue.table(
        records=[
            TableRecord({"widget_id": e.widget_id or "", "type": e.type or "", "code": e.code, "message": e.message})
            for e in errors[:MAX_ERRORS_SHOWN]
        ],
        schema=_ERROR_SCHEMA,
    )


def _store(context: AssetExecutionContext, widget_sync: WidgetSyncResource) -> StoreConfig:
    try:
        return widget_sync.store(context.partition_key)
    except (UnknownStoreError, RegistryError) as exc:
        raise Failure(description=str(exc), metadata={"error_code": "UNKNOWN_STORE"}) from None


@asset(
    partitions_def=stores_partitions,
    group_name=GROUP,
    kinds={"python"},
    pool=PA_POOL,
    description="Every widget of the store from PA's Widgets API, validated; rejects kept with their reason.",
)
def pa_widgets(context: AssetExecutionContext, widget_sync: WidgetSyncResource) -> WidgetFetch:
    store = _store(context, widget_sync)
    try:
        with widget_sync.pa_client(store) as client:
            fetch = client.fetch_widgets()
    except (PAError, RegistryError) as exc:
        raise Failure(description=str(exc), metadata={"error_code": getattr(exc, "code", "REGISTRY")}) from None
    context.add_output_metadata(
        {
            "total": fetch.total,
            "valid": len(fetch.widgets),
            "rejected": len(fetch.rejects),
            "complete": fetch.complete,
            "pages": fetch.pages,
            "requests": fetch.requests,
            "incomplete_reason": fetch.incomplete_reason or "",
        }
    )
    return fetch


@asset(
    partitions_def=stores_partitions,
    group_name=GROUP,
    kinds={"pandas"},
    description="Metaobject payloads (handle, field values, sync_hash) per synced widget type; other PA types skipped.",
)
def widgets_by_type(
    context: AssetExecutionContext, pa_widgets: WidgetFetch, widget_sync: WidgetSyncResource
) -> WidgetsByType:
    store = _store(context, widget_sync)
    grouped = group_widgets(pa_widgets, store.metaobject_types)
    summary = grouped.summary()
    context.add_output_metadata(
        {
            **{k: v for k, v in summary.items() if isinstance(v, (int, float, bool, str))},
            "summary": MetadataValue.json(summary),
            "errors": errors_table(grouped.failed),
        }
    )
    return grouped


def _check_metadata(check: DefinitionCheck) -> dict[str, Any]:
    return {
        "metaobject_type": check.metaobject_type,
        "exists": check.exists,
        "missing_keys": MetadataValue.json(list(check.missing_keys)),
        "wrong_types": MetadataValue.json([{"key": k, "expected": e, "actual": a} for k, e, a in check.wrong_types]),
        "extra_required_keys": MetadataValue.json(list(check.extra_required_keys)),
        "summary": check.describe(),
    }


def outcome_metadata(result: TypeSyncResult) -> dict[str, Any]:
    """Counts as plain numbers (the UI plots them), the whole outcome as JSON (history reads it)."""
    return {
        "total": result.total,
        "synced": result.synced,
        "unchanged": result.unchanged,
        "deleted": result.deleted,
        "failed": result.failed,
        "dry_run": result.dry_run,
        "outcome": MetadataValue.json(result.to_metadata()),
        "errors": errors_table(result.errors),
    }


def build_write_asset(type_key: str):
    asset_name = f"{type_key}_metaobjects"

    @asset(
        name=asset_name,
        partitions_def=stores_partitions,
        group_name=GROUP,
        kinds={"shopify"},
        check_specs=[
            AssetCheckSpec(
                DEFINITION_CHECK,
                asset=asset_name,
                partitions_def=stores_partitions,
                description=f"The store's {type_key} metaobject definition has every contract field with its type "
                "and requires no field the pipeline does not write.",
            )
        ],
        description=f"The store's {type_key} widgets written into their Shopify metaobjects: only what changed, "
        "deletes only after a complete fetch, never a mass delete without an override.",
    )
    def write_metaobjects(
        context: AssetExecutionContext,
        widgets_by_type: WidgetsByType,
        widget_sync: WidgetSyncResource,
        sync_options: SyncOptions,
    ) -> Iterator[Any]:
        store = _store(context, widget_sync)
        metaobject_type = store.metaobject_types[type_key]
        frame = widgets_by_type.frames[type_key]

        def fail(result: TypeSyncResult, why: str) -> Failure:
            return Failure(description=why, metadata=outcome_metadata(result))

        try:
            client = widget_sync.shopify_client(store)
            check = check_definition(metaobject_type, client.definition_by_type(metaobject_type))
        except (ShopifyError, RegistryError) as exc:
            result = failed_before_writes(
                store=store.key, type_key=type_key, metaobject_type=metaobject_type, frame=frame, cause=exc
            )
            raise fail(result, str(exc)) from None

        yield AssetCheckResult(
            check_name=DEFINITION_CHECK,
            passed=check.passed,
            severity=AssetCheckSeverity.ERROR,
            metadata=_check_metadata(check),
            description=check.describe(),
        )

        logged: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            # About ten lines per phase, whatever the batch sizes.
            step = max(1, total // 10)
            if done == total or done // step > logged.get(phase, -1):
                logged[phase] = done // step
                context.log.info(f"{store.key} {type_key}: {done}/{total} {phase} writes done")

        try:
            result = sync_type(
                store=store.key,
                type_key=type_key,
                metaobject_type=metaobject_type,
                frame=frame,
                client=client,
                fetch_complete=widgets_by_type.complete,
                allow_mass_delete=store.allow_mass_delete or sync_options.allow_mass_delete,
                dry_run=sync_options.dry_run,
                check=check,
                on_progress=progress,
                keep_handles=widgets_by_type.keep_handles_for(type_key),
                rewrite_unchanged=sync_options.rewrite_unchanged,
            )
        except TypeSyncAborted as exc:
            raise fail(exc.partial_result, f"{store.key} {type_key}: writes stopped: {exc.cause}") from None

        if not check.passed:
            raise fail(result, check.describe())
        if result.delete_refused:
            context.log.warning(f"{store.key} {type_key}: {result.delete_refused}")
        if result.failed and result.synced + result.unchanged == 0:
            raise fail(result, f"{store.key} {type_key}: no widget could be written ({result.failed} failed)")
        yield MaterializeResult(metadata=outcome_metadata(result))

    return write_metaobjects


write_assets = [build_write_asset(type_key) for type_key in TYPE_KEYS]
sync_assets = [pa_widgets, widgets_by_type, *write_assets]
