"""PA widget models: what a widget from the Widgets API must look like to be synced.

Parsing never raises for one bad widget: `parse_widgets` turns each raw dict into either a `Widget`
or a `WidgetReject` that names the widget (when its id is known), the field and the reason.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

WIDGET_TYPE_NAMES = {
    1: "Recommendation",
    2: "Modal",
    3: "Search Preview",
    4: "Search Results",
    5: "Bundle",
    6: "Merchandising",
    7: "Visual Search",
    8: "Anchor Button",
    9: "Progress Bar",
}


class Widget(BaseModel):
    """One PA widget as the Widgets API returns it; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    id: StrictStr = Field(min_length=1)
    type: StrictInt
    name: StrictStr
    website_id: StrictStr | None = Field(default=None, alias="websiteId")
    type_name: StrictStr | None = Field(default=None, alias="typeName")
    is_active: StrictBool = Field(default=True, alias="isActive")
    location: StrictStr | None = None
    number_of_slots: StrictInt | None = Field(default=None, alias="numberOfSlots")
    header: dict[str, Any] | None = None
    routes: list[dict[str, Any]] = Field(default_factory=list)
    slots: list[dict[str, Any]] = Field(default_factory=list)
    styles: dict[str, Any] | None = None
    created_at: StrictStr | None = Field(default=None, alias="createdAt")
    updated_at: StrictStr | None = Field(default=None, alias="updatedAt")


class WidgetReject(BaseModel):
    """A widget that could not be taken: counted as failed, with its reason."""

    model_config = ConfigDict(frozen=True)

    widget_id: str | None
    type: int | None
    field: str
    code: str
    message: str


def _known_id(raw: Any) -> str | None:
    if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"]:
        return raw["id"]
    return None


def _known_type(raw: Any) -> int | None:
    if isinstance(raw, dict) and type(raw.get("type")) is int:
        return raw["type"]
    return None


def parse_widget(raw: Any) -> Widget | WidgetReject:
    """Validate one raw widget dict; never raises."""
    if not isinstance(raw, dict):
        return WidgetReject(
            widget_id=None, type=None, field="(widget)", code="INVALID_WIDGET",
            message=f"expected a JSON object, got {type(raw).__name__}",
        )
    try:
        return Widget.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(widget)"
        return WidgetReject(
            widget_id=_known_id(raw), type=_known_type(raw), field=field,
            code="INVALID_WIDGET", message=first["msg"],
        )


def parse_widgets(raws: list[Any]) -> tuple[list[Widget], list[WidgetReject]]:
    """Validate a whole fetch: invalid widgets and every copy of a duplicated id become rejects."""
    parsed = [parse_widget(raw) for raw in raws]
    id_counts: dict[str, int] = {}
    for item in parsed:
        if isinstance(item, Widget):
            id_counts[item.id] = id_counts.get(item.id, 0) + 1
    widgets: list[Widget] = []
    rejects: list[WidgetReject] = []
    for item in parsed:
        if isinstance(item, WidgetReject):
            rejects.append(item)
        elif id_counts[item.id] > 1:
            rejects.append(WidgetReject(
                widget_id=item.id, type=item.type, field="id", code="DUPLICATE_ID",
                message=f"widget id {item.id} appears {id_counts[item.id]} times in one fetch",
            ))
        else:
            widgets.append(item)
    return widgets, rejects


class WidgetFetch(BaseModel):
    """Everything one store's fetch produced, and whether it saw every page."""

    store: str
    website_id: str
    widgets: list[Widget]
    rejects: list[WidgetReject] = Field(default_factory=list)
    complete: bool
    reported_total: int | None = None
    pages: int = 0
    requests: int = 0
    incomplete_reason: str | None = None

    @property
    def total(self) -> int:
        return len(self.widgets) + len(self.rejects)
