"""A job that creates missing metaobject definitions of the contract for chosen stores."""


from dagster import Config, Failure, MetadataValue, OpExecutionContext, Output, job, op

from pa_widget_pipeline.defs.resources import WidgetSyncResource
from pa_widget_pipeline.shopify.errors import ShopifyError
from pa_widget_pipeline.stores import RegistryError
from pa_widget_pipeline.sync.contract import TYPE_KEYS
from pa_widget_pipeline.sync.definitions import ensure_definition


class EnsureDefinitionsConfig(Config):
    stores: list[str] = []  # empty: every store of the registry
    add_missing_fields: bool = False  # add contract fields missing from an existing definition
    dry_run: bool = False


@op(description="Create missing contract definitions (and, when asked, add missing fields); change nothing else.")
def ensure_definitions_for_stores(
    context: OpExecutionContext, config: EnsureDefinitionsConfig, widget_sync: WidgetSyncResource
):
    registry = widget_sync.registry()
    keys = config.stores or registry.keys
    reports, failures = [], []
    for key in keys:
        try:
            store = registry.get(key)
            client = widget_sync.shopify_client(store)
            for type_key in TYPE_KEYS:
                report = ensure_definition(
                    client, store=key, type_key=type_key, metaobject_type=store.metaobject_types[type_key],
                    add_missing_fields=config.add_missing_fields, dry_run=config.dry_run,
                )
                context.log.info(f"{key}: {report.message}")
                reports.append(report.as_dict())
        except (KeyError, ShopifyError, RegistryError) as exc:
            failures.append(f"{key}: {exc}")
            context.log.error(f"{key}: {exc}")
    metadata = {
        "report": MetadataValue.json(reports),
        "created": sum(r["action"] == "created" for r in reports),
        "fields_added": sum(r["action"] == "fields_added" for r in reports),
        "needs_attention": sum(r["action"] in ("needs_fields", "needs_attention") for r in reports),
    }
    if failures:
        raise Failure(description="; ".join(failures), metadata=metadata)
    return Output(None, metadata=metadata)


@job(name="ensure_metaobject_definitions", description=ensure_definitions_for_stores.description)
def ensure_definitions_job():
    ensure_definitions_for_stores()
