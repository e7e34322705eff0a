"""A local Particular Audience Widgets API, faithful to /work/shared/specs/pa-widgets-api.md.

Served over real HTTP by `ServerThread` (sandbox/server.py) so the PA client is tested through httpx, sockets and
all. What it does:

- `POST /auth/connect/token` (form: client_id, client_secret, grant_type=client_credentials) issues Bearer tokens
  that really expire after `token_lifetime_seconds` (measured with the injectable `clock`).
- `GET /3.0/widgets?websiteId=&page=&pageSize=` answers one page of a website's widgets. A token only reads the
  websites registered with its client_id: another client's website answers 404 exactly like an unknown one, so
  credentials never cross stores.
- `faults` (a mutable `PAFaults`) switches on the failures a real PA (or the proxy in front of it) produces:
  5xx with the JSON envelope or an HTML body, 429 with Retry-After, dropped connections, latency, an outage,
  tokens expiring mid-fetch, and a store that grows while it is being paged.
- Every request is recorded in `requests` (never the client secret or the token).

`make_widget` / `make_widgets` build realistic, deterministic widgets for demo data, tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pa_widget_pipeline.pa.models import WIDGET_TYPE_NAMES

TOKEN_PATH = "/auth/connect/token"
WIDGETS_PATH = "/3.0/widgets"
MAX_PAGE_SIZE = 200
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
DEFAULT_PAGE_SIZE = 50

_HTML_503 = (
    b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    b"<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


# --------------------------------------------------------------------------------------------------------------------
# Fault switches and request log


@dataclass
class PAFaults:
    """Mutable switches, all off by default. Counters decrement as they are used.

    The widget-list faults apply to requests that would otherwise be served (authorised, valid, known website),
    in this order: rate_limit_next, fail_next, fail_on_page, drop_next. `down` and `latency_seconds` apply to
    every request, the token endpoint included.
    """

    fail_next: int = 0                 # next N widget-list requests answer fail_status; every other one HTML
    fail_status: int = 503
    fail_on_page: dict[int, int] = field(default_factory=dict)  # page -> how many times it answers 503 first
    rate_limit_next: int = 0           # next N widget-list requests answer 429 with Retry-After: retry_after
    retry_after: float = 1.0
    drop_next: int = 0                 # next N widget-list requests: connection dropped mid-response
    latency_seconds: float = 0.0       # added to every request
    down: bool = False                 # every request (token included) answers 503
    expire_tokens_after_pages: int | None = None  # after serving N more pages, all issued tokens expire (one-shot)
    mutate_total_after_page: int | None = None    # after serving that page, one widget is appended
    mutate_total_times: int = 1        # how many times mutate_total_after_page fires before it switches itself off


@dataclass(frozen=True)
class PARequest:
    method: str
    path: str
    website_id: str | None
    client_id: str | None
    page: int | None
    status: int
    dropped: bool = False              # the response was cut off mid-body (drop_next)


class DroppedConnection(Exception):
    """Raised after a partial body so uvicorn closes the socket (the client sees RemoteProtocolError)."""


class _QuietDroppedConnections(logging.Filter):
    """uvicorn logs every exception raised by the app; a deliberate drop is not worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        seen = 0
        while exc is not None and seen < 5:
            if isinstance(exc, DroppedConnection):
                return False
            exc = exc.__cause__ or exc.__context__
            seen += 1
        return True


_QUIET_FILTER = _QuietDroppedConnections()


def _install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if _QUIET_FILTER not in logger.filters:
        logger.addFilter(_QUIET_FILTER)


# --------------------------------------------------------------------------------------------------------------------
# Responses


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _envelope(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(status, {"type": -1, "code": status, "message": message}, headers)


class _DroppingResponse(Response):
    """Announces the full Content-Length, sends half the body, then breaks the connection."""

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[override]
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: max(1, len(self.body) // 2)],
                    "more_body": True})
        raise DroppedConnection("sandbox fault: connection dropped mid-response")


# --------------------------------------------------------------------------------------------------------------------
# State


@dataclass
class _Website:
    website_id: str
    client_id: str
    widgets: list[dict]
    appended: int = 0


@dataclass
class _Token:
    client_id: str
    expires_at: float


def _parse_int(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except (ValueError, AttributeError):
        return None


class PASandbox:
    """In-memory PA: websites per client, tokens, fault switches and a request log. Thread-safe."""

    def __init__(self, token_lifetime_seconds: float = 90000, *, clock: Callable[[], float] = time.monotonic):
        self.token_lifetime_seconds = token_lifetime_seconds
        self.clock = clock
        self.faults = PAFaults()
        self.requests: list[PARequest] = []
        self._lock = threading.Lock()
        self._websites: dict[str, _Website] = {}
        self._clients: dict[str, str] = {}       # client_id -> client_secret
        self._tokens: dict[str, _Token] = {}
        self._html_toggle = 0                    # 5xx answers alternate: envelope, HTML, envelope, ...
        self.tokens_issued = 0

    # ---- set-up ------------------------------------------------------------------------------------------------

    def add_website(self, website_id: str, client_id: str, client_secret: str, widgets: list[dict]) -> None:
        with self._lock:
            known = self._clients.get(client_id)
            if known is not None and known != client_secret:
                raise ValueError(f"client {client_id!r} is already registered with a different secret")
            self._clients[client_id] = client_secret
            self._websites[website_id] = _Website(website_id, client_id, list(widgets))

    def set_widgets(self, website_id: str, widgets: list[dict]) -> None:
        with self._lock:
            self._websites[website_id].widgets = list(widgets)

    def widgets(self, website_id: str) -> list[dict]:
        """A copy of what the website currently holds (for assertions)."""
        with self._lock:
            return list(self._websites[website_id].widgets)

    def expire_all_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def clear_requests(self) -> None:
        with self._lock:
            self.requests = []

    def _record(self, request: PARequest) -> None:
        with self._lock:
            self.requests.append(request)

    # ---- the app -----------------------------------------------------------------------------------------------

    def app(self) -> Starlette:
        _install_log_filter()
        routes = [
            Route(TOKEN_PATH, self._token_endpoint, methods=_ALL_METHODS),
            Route(WIDGETS_PATH, self._widgets_endpoint, methods=_ALL_METHODS),
            Route("/{rest:path}", self._not_found, methods=_ALL_METHODS),
        ]
        return Starlette(routes=routes)

    async def _preamble(self) -> Response | None:
        latency = self.faults.latency_seconds
        if latency > 0:
            await asyncio.sleep(latency)
        if self.faults.down:
            return _envelope(503, "Service Unavailable")
        return None

    async def _not_found(self, request: Request) -> Response:
        response = await self._preamble() or _envelope(404, "Not Found")
        self._record(PARequest(request.method, request.url.path, None, None, None, response.status_code))
        return response

    async def _token_endpoint(self, request: Request) -> Response:
        client_id: str | None = None
        response = await self._preamble()
        if response is None:
            if request.method != "POST":
                response = _envelope(405, "Method Not Allowed", {"Allow": "POST"})
            else:
                content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
                if content_type != "application/x-www-form-urlencoded":
                    response = _json(400, {"error": "invalid_request"})
                else:
                    form = parse_qs((await request.body()).decode("utf-8", "replace"))
                    client_id = (form.get("client_id") or [None])[0]
                    response = self._issue_token(
                        client_id, (form.get("client_secret") or [None])[0], (form.get("grant_type") or [None])[0]
                    )
        self._record(PARequest(request.method, request.url.path, None, client_id, None, response.status_code))
        return response

    def _issue_token(self, client_id: str | None, client_secret: str | None, grant_type: str | None) -> Response:
        if not grant_type or not client_id:
            return _json(400, {"error": "invalid_request"})
        if grant_type != "client_credentials":
            return _json(400, {"error": "unsupported_grant_type"})
        with self._lock:
            known = self._clients.get(client_id)
            if known is None or client_secret is None or not secrets.compare_digest(known, client_secret):
                return _json(400, {"error": "invalid_client"})
            token = secrets.token_urlsafe(32)
            self._tokens[token] = _Token(client_id, self.clock() + self.token_lifetime_seconds)
            self.tokens_issued += 1
        lifetime = self.token_lifetime_seconds
        expires_in = int(lifetime) if float(lifetime).is_integer() else lifetime
        return _json(200, {"access_token": token, "token_type": "Bearer", "expires_in": expires_in},
                     {"Cache-Control": "no-store"})

    def _client_for(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        with self._lock:
            issued = self._tokens.get(token.strip())
            if issued is None:
                return None
            if self.clock() >= issued.expires_at:
                del self._tokens[token.strip()]
                return None
            return issued.client_id

    async def _widgets_endpoint(self, request: Request) -> Response:
        params = request.query_params
        website_id = params.get("websiteId")
        page = _parse_int(params.get("page"))
        client_id: str | None = None
        dropped = False
        response = await self._preamble()
        if response is None:
            client_id = self._client_for(request)
            response, dropped = self._widgets_answer(request, client_id, website_id)
        self._record(PARequest(request.method, request.url.path, website_id, client_id, page,
                               response.status_code, dropped))
        return response

    def _widgets_answer(self, request: Request, client_id: str | None,
                        website_id: str | None) -> tuple[Response, bool]:
        if request.method != "GET":
            return _envelope(405, "Method Not Allowed", {"Allow": "GET"}), False
        if client_id is None:
            return _envelope(401, "Unauthorized", {"WWW-Authenticate": 'Bearer error="invalid_token"'}), False
        params = request.query_params
        if not website_id:
            return _envelope(400, "websiteId is required"), False
        raw_page, raw_size = params.get("page"), params.get("pageSize")
        page = 1 if raw_page is None else _parse_int(raw_page)
        size = DEFAULT_PAGE_SIZE if raw_size is None else _parse_int(raw_size)
        if page is None or page < 1:
            return _envelope(400, "page must be an integer of at least 1"), False
        if size is None or size < 1:
            return _envelope(400, "pageSize must be an integer of at least 1"), False
        size = min(size, MAX_PAGE_SIZE)

        faults = self.faults
        with self._lock:
            site = self._websites.get(website_id)
            if site is None or site.client_id != client_id:
                return _envelope(404, "Website not found"), False
            if faults.rate_limit_next > 0:
                faults.rate_limit_next -= 1
                retry_after = str(max(0, math.ceil(faults.retry_after)))
                return _envelope(429, "Too Many Requests", {"Retry-After": retry_after}), False
            if faults.fail_next > 0:
                faults.fail_next -= 1
                return self._server_error(faults.fail_status), False
            if faults.fail_on_page.get(page, 0) > 0:
                faults.fail_on_page[page] -= 1
                return self._server_error(503), False
            total = len(site.widgets)
            start = (page - 1) * size
            chunk = site.widgets[start:start + size]     # copies at most `size` references
            drop = faults.drop_next > 0
            if drop:
                faults.drop_next -= 1
            else:
                self._after_page_served(site, page)
        payload = {
            "widgets": chunk,
            "pagination": {"page": page, "pageSize": size, "totalCount": total,
                           "totalPages": math.ceil(total / size)},
        }
        if drop:
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            return _DroppingResponse(body, status_code=200, media_type="application/json"), True
        return _json(200, payload), False

    def _server_error(self, status: int) -> Response:
        """Caller holds the lock. Alternates the JSON envelope and a proxy's HTML page."""
        html = self._html_toggle % 2 == 1
        self._html_toggle += 1
        if html:
            return Response(_HTML_503, status_code=status, media_type="text/html")
        return _envelope(status, "Service Unavailable")

    def _after_page_served(self, site: _Website, page: int) -> None:
        """Caller holds the lock: token expiry and store growth faults count served pages."""
        faults = self.faults
        if faults.expire_tokens_after_pages is not None:
            faults.expire_tokens_after_pages -= 1
            if faults.expire_tokens_after_pages <= 0:
                faults.expire_tokens_after_pages = None
                self._tokens.clear()
        if faults.mutate_total_after_page is not None and page == faults.mutate_total_after_page:
            site.appended += 1
            index = len(site.widgets)
            site.widgets.append(make_widget(
                index, site.website_id, 1,
                id=widget_guid(site.website_id, site.appended, salt="appended"),
                name=f"Added while paging {site.appended}",
            ))
            faults.mutate_total_times -= 1
            if faults.mutate_total_times <= 0:
                faults.mutate_total_after_page = None
                faults.mutate_total_times = 1


# --------------------------------------------------------------------------------------------------------------------
# Realistic widgets


class _Remove:
    def __repr__(self) -> str:
        return "REMOVE"


REMOVE: Any = _Remove()
"""Pass as an override value to `make_widget` to leave that field out (e.g. `id=REMOVE`)."""

DEFAULT_TYPE_CYCLE = (1, 1, 6, 5, 1, 6, 2, 3, 1, 5, 4, 7, 6, 8, 9)

_LOCATIONS = {
    1: [("PDP", "pdp-below-description", "You may also like", "Similar items"),
        ("Cart", "cart-drawer", "Complete the look", "Add these"),
        ("Home", "home-below-hero", "Trending now", "Trending"),
        ("PLP", "plp-top", "Picked for you", "For you")],
    2: [("Exit intent", "modal-exit-intent", "Before you go", "Wait!")],
    3: [("Search", "search-dropdown", "Popular searches", "Popular")],
    4: [("Search results", "search-results-grid", "Results", "Results")],
    5: [("PDP", "pdp-bundle", "Frequently bought together", "Bundle & save"),
        ("Cart", "cart-bundle", "Bundle and save", "Bundles")],
    6: [("Home", "home-merch-rail", "Staff picks", "Staff picks"),
        ("PLP", "plp-merch-banner", "Featured", "Featured")],
    7: [("PDP", "pdp-visual-search", "Shop the look", "Shop the look")],
    8: [("PDP", "pdp-anchor", "See similar", "Similar")],
    9: [("Cart", "cart-progress", "Free shipping progress", "Free shipping")],
}
_THEMES = ("light", "dark", "brand")
_EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc)


def widget_guid(website_id: str, i: int, salt: str = "widget") -> str:
    """A deterministic version-4-shaped GUID for the i-th thing of a website (same inputs, same id)."""
    h = hashlib.blake2b(f"{salt}:{website_id}:{i}".encode(), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


@functools.lru_cache(maxsize=4096)
def _pool_guid(website_id: str, i: int, salt: str) -> str:
    """Recommenders, campaigns, tactics and routes come from a small per-website pool (shared strings)."""
    return widget_guid(website_id, i, salt)


def _route_index(location: str) -> int:
    return sum(location.encode()) % 997


def _stamp(seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_widget(i: int, website_id: str, type: int, **overrides: Any) -> dict:
    """A realistic widget shaped like the spec's JSON example, deterministic in (i, website_id, type).

    `overrides` replace top-level fields (use the API's camelCase names, e.g. `numberOfSlots=3`); an override
    of `REMOVE` drops the field.
    """
    options = _LOCATIONS.get(type) or [("Page", "custom", "Recommended", "For you")]
    page_label, location, title, short = options[i % len(options)]
    created = (i * 7919) % (60 * 86400)
    updated = created + 3600 + (i * 104729) % (30 * 86400)
    slots = [
        {
            "position": position,
            "label": f"Slot {position}",
            "recommenderId": _pool_guid(website_id, (i + position) % 24, "recommender"),
            "campaignIds": [_pool_guid(website_id, (i * 3 + position) % 40, "campaign")],
            "tacticIds": [_pool_guid(website_id, (i * 5 + position) % 32, "tactic")],
        }
        for position in range(1, 2 + i % 3)
    ]
    widget = {
        "id": widget_guid(website_id, i),
        "websiteId": website_id,
        "name": f"{page_label} - {title} #{i}",
        "type": type,
        "typeName": WIDGET_TYPE_NAMES.get(type, "Unknown"),
        "isActive": (i + 1) % 17 != 0,
        "location": location,
        "numberOfSlots": 4 + (i % 3) * 2,
        "header": {"title": {"collapsed": {"desktop": title, "mobile": title},
                             "expanded": {"desktop": title, "mobile": short}}},
        "routes": [{"id": _pool_guid(website_id, _route_index(location), "route"), "name": page_label,
                    "priority": 10 + i % 5}],
        "slots": slots,
        "styles": {"general": {"theme": _THEMES[i % 3]}, "desktop": {"columns": 4 + i % 2},
                   "mobile": {"columns": 2}},
        "createdAt": _stamp(created),
        "updatedAt": _stamp(updated),
    }
    for key, value in overrides.items():
        if value is REMOVE:
            widget.pop(key, None)
        else:
            widget[key] = value
    return widget


def make_widgets(count: int, website_id: str, *, types: tuple[int, ...] = DEFAULT_TYPE_CYCLE,
                 start: int = 0) -> list[dict]:
    """`count` widgets with indices start..start+count-1, their types cycling through `types`."""
    return [make_widget(i, website_id, types[i % len(types)]) for i in range(start, start + count)]
