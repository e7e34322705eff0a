"""Particular Audience Widgets API client: OAuth client credentials, paging, retries, validation.

One `PAClient` reads one store's website. `fetch_widgets()` returns a `WidgetFetch` (pa/models.py) that says
whether every page was read while PA's total stayed put (`complete`): only a complete fetch may lead to deletes.

Failure policy (spec: /work/shared/specs/pa-widgets-api.md):
- 401 on the widget list: drop the cached token, fetch a new one once, retry that page; a second 401 → PAConfigError.
- 429 (honouring Retry-After, capped), 5xx, timeouts and dropped connections (httpx.TransportError): retried with
  exponential backoff and jitter (tenacity) while one request's attempts and waits fit in `retry_budget_seconds`;
  past it → PAUnavailableError naming what failed, the last status and the number of attempts.
- 400 / 404 / other 4xx / invalid_client: PAConfigError at once, never retried.
Secrets (client secret, access token) are kept in pydantic `SecretStr` and never reach messages, reprs or logs.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception_type

from ..net import is_loopback_host, parse_retry_after
from .errors import PAConfigError, PAUnavailableError
from .models import WidgetFetch, parse_widgets

log = logging.getLogger(__name__)

TOKEN_PATH = "/auth/connect/token"
WIDGETS_PATH = "/3.0/widgets"
MAX_PAGE_SIZE = 200
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0
BACKOFF_JITTER = 0.5


# --------------------------------------------------------------------------------------------------------------------
# Wire models (unknown fields ignored)


class _TokenAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    access_token: SecretStr = Field(min_length=1)
    token_type: str = "Bearer"
    expires_in: float = Field(gt=0)


class _Pagination(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    page: int = Field(ge=1)
    page_size: int = Field(alias="pageSize", ge=1)
    total_count: int = Field(alias="totalCount", ge=0)
    total_pages: int = Field(alias="totalPages", ge=0)


class _PageAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    widgets: list[Any]
    pagination: _Pagination


# --------------------------------------------------------------------------------------------------------------------
# Helpers


class _Transient(Exception):
    """One failed attempt worth retrying (429, 5xx, transport error). Its text never carries a secret."""

    def __init__(self, what: str, detail: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(f"{what}: {detail}")
        self.what = what
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


@dataclass
class _Pass:
    raws: list[Any]
    pages: int
    total: int
    change: str | None   # why this pass cannot count as complete, None when it can


# --------------------------------------------------------------------------------------------------------------------
# The client


class PAClient:
    """Reads every widget of one PA website. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        *,
        store: str,
        api_url: str,
        auth_url: str,
        website_id: str,
        client_id: str,
        client_secret: str,
        page_size: int = 200,
        timeout: float = 30.0,
        retry_budget_seconds: float = 60.0,
        max_restarts: int = 2,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_retry_after: float = 30.0,
        token_refresh_margin: float = 60.0,
    ):
        self.store = store
        self.website_id = website_id
        if not store or not website_id:
            raise PAConfigError(store, website_id, "store and website id are required")
        if not client_id or not client_secret:
            raise PAConfigError(store, website_id, "client id and client secret are required")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise PAConfigError(store, website_id, f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
        if max_restarts < 0 or retry_budget_seconds < 0 or timeout <= 0:
            raise PAConfigError(store, website_id, "max_restarts and retry_budget_seconds must be >= 0, timeout > 0")
        self.api_url = self._validated_base(api_url, "api_url")
        self.auth_url = self._validated_base(auth_url, "auth_url")
        self.client_id = client_id
        self._client_secret = SecretStr(client_secret)
        self.page_size = page_size
        self.timeout = timeout
        self.retry_budget_seconds = retry_budget_seconds
        self.max_restarts = max_restarts
        self.max_retry_after = max_retry_after
        self.token_refresh_margin = token_refresh_margin
        self._sleep = sleep
        self._clock = clock
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(timeout=timeout, follow_redirects=False)
        self._token: SecretStr | None = None
        self._token_refresh_at = 0.0
        self.requests_made = 0
        self.tokens_fetched = 0
        self._random = random.Random()

    # ---- plumbing ----------------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (f"PAClient(store={self.store!r}, website_id={self.website_id!r}, api_url={self.api_url!r}, "
                f"client_id={self.client_id!r})")

    def __enter__(self) -> "PAClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._token = None
        if self._owns_http:
            self._http.close()

    def _config_error(self, message: str, status: int | None = None) -> PAConfigError:
        return PAConfigError(self.store, self.website_id, self._scrub(message), status=status)

    def _scrub(self, text: str) -> str:
        """Belt and braces: whatever PA echoes back, our secrets never leave in a message."""
        for secret in (self._client_secret.get_secret_value() if hasattr(self, "_client_secret") else None,
                       self._token.get_secret_value() if getattr(self, "_token", None) else None):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _validated_base(self, url: str, label: str) -> str:
        try:
            parsed = httpx.URL(url)
        except Exception:
            raise self._config_error(f"{label} is not a valid URL") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise self._config_error(f"{label} must be an http(s) URL with a host")
        if parsed.userinfo:
            raise self._config_error(f"{label} must not carry credentials (user:password@); "
                                     "configure client_id/client_secret instead")
        if parsed.query or parsed.fragment:
            raise self._config_error(f"{label} must not carry a query string or fragment")
        if parsed.scheme == "http" and not is_loopback_host(parsed.host):
            raise self._config_error(f"{label} must use https (plain http is only allowed for loopback hosts), "
                                     f"got http://{parsed.host}")
        return str(parsed).rstrip("/")

    # ---- one HTTP exchange -------------------------------------------------------------------------------------

    def _send(self, what: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self.requests_made += 1
        try:
            return self._http.request(method, url, timeout=self.timeout, **kwargs)
        except httpx.TransportError as exc:
            raise _Transient(what, f"{type(exc).__name__} ({self._scrub(str(exc)) or 'no detail'})") from None
        except httpx.HTTPError as exc:
            raise PAUnavailableError(self.store, self.website_id,
                                     f"{what}: {type(exc).__name__}: {self._scrub(str(exc))}") from None

    def _describe_body(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            kind = response.headers.get("content-type", "").split(";")[0] or "unknown"
            return f"non-JSON body ({kind})"
        if isinstance(body, dict):
            if "message" in body:
                return self._scrub(str(body["message"])[:200])
            if "error" in body:
                return self._scrub(str(body["error"])[:200])
        return "unexpected body"

    def _check(self, what: str, response: httpx.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        detail = self._describe_body(response)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise _Transient(what, f"HTTP 429 {detail}", status, retry_after)
        if status >= 500:
            raise _Transient(what, f"HTTP {status} {detail}", status)
        if 300 <= status < 400:
            raise self._config_error(f"{what}: PA answered a redirect (HTTP {status}); check the configured URL",
                                     status)
        raise self._config_error(f"{what}: PA answered HTTP {status} ({detail}); not retried", status)

    def _backoff(self, attempt_number: int) -> float:
        """Exponential backoff with jitter: 0.5 s, 1 s, 2 s, ... capped at 10 s, plus up to 0.5 s at random."""
        return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempt_number - 1) + self._random.uniform(0, BACKOFF_JITTER))

    def _with_retries(self, what: str, attempt: Callable[[], Any]) -> Any:
        budget = self.retry_budget_seconds
        spent = [0.0]   # time used by this request's attempts and waits, as of the last wait

        def used(rs: RetryCallState) -> float:
            # With a real sleep the wall clock counts the waits; with an injected one only the waits are known.
            return max(rs.seconds_since_start or 0.0, rs.idle_for)

        def stop(rs: RetryCallState) -> bool:
            return used(rs) + (rs.upcoming_sleep or 0.0) > budget

        def wait(rs: RetryCallState) -> float:
            exc = rs.outcome.exception() if rs.outcome else None
            if isinstance(exc, _Transient) and exc.retry_after is not None:
                return max(0.1, min(exc.retry_after, self.max_retry_after))
            return self._backoff(rs.attempt_number)

        def before_sleep(rs: RetryCallState) -> None:
            spent[0] = used(rs)            # tenacity has already counted the coming sleep in idle_for
            exc = rs.outcome.exception() if rs.outcome else None
            log.warning("store %r (PA website %s): %s; attempt %d failed, retrying in %.2fs",
                        self.store, self.website_id, exc, rs.attempt_number, rs.upcoming_sleep)

        retrying = Retrying(stop=stop, wait=wait, retry=retry_if_exception_type(_Transient), sleep=self._sleep,
                            before_sleep=before_sleep, reraise=False)
        try:
            return retrying(attempt)
        except RetryError as err:
            last = err.last_attempt.exception()
            attempts = err.last_attempt.attempt_number
            status = getattr(last, "status", None)
            failure = last.detail if isinstance(last, _Transient) and last.what == what else last
            raise PAUnavailableError(
                self.store, self.website_id,
                f"{what}: PA still failing after {attempts} attempt{'s' if attempts != 1 else ''} "
                f"({spent[0]:.1f}s spent, retry budget {budget:g}s); last failure: {failure}",
                status=status,
            ) from None

    # ---- token ---------------------------------------------------------------------------------------------

    def _access_token(self) -> str:
        now = self._clock()
        if self._token is not None and now < self._token_refresh_at:
            return self._token.get_secret_value()
        self._token = None
        what = "token request"
        response = self._send(what, "POST", f"{self.auth_url}{TOKEN_PATH}", data={
            "client_id": self.client_id,
            "client_secret": self._client_secret.get_secret_value(),
            "grant_type": "client_credentials",
        })
        if response.status_code in (400, 401) and self._describe_body(response) in (
                "invalid_client", "unauthorized_client"):
            raise self._config_error(
                f"PA rejected the client credentials of client {self.client_id!r} (invalid_client); not retried",
                response.status_code)
        self._check(what, response)
        try:
            answer = _TokenAnswer.model_validate(response.json())
        except (ValueError, ValidationError):
            raise PAUnavailableError(self.store, self.website_id,
                                     f"{what}: PA's token answer is not a valid token response") from None
        if answer.token_type.lower() != "bearer":
            raise PAUnavailableError(self.store, self.website_id,
                                     f"{what}: unsupported token type {answer.token_type[:20]!r}")
        margin = min(self.token_refresh_margin, answer.expires_in * 0.1)
        self._token = answer.access_token
        self._token_refresh_at = now + answer.expires_in - margin
        self.tokens_fetched += 1
        return self._token.get_secret_value()

    # ---- pages ---------------------------------------------------------------------------------------------

    def _page_attempt(self, page: int) -> _PageAnswer:
        what = f"widget list page {page}"
        refreshed = False
        while True:
            token = self._access_token()
            response = self._send(what, "GET", f"{self.api_url}{WIDGETS_PATH}",
                                  params={"websiteId": self.website_id, "page": page, "pageSize": self.page_size},
                                  headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
            if response.status_code == 401:
                self._token = None
                if refreshed:
                    raise self._config_error(
                        f"{what}: PA answered 401 Unauthorized even with a freshly issued token; "
                        f"client {self.client_id!r} cannot read this website", 401)
                refreshed = True
                log.info("store %r (PA website %s): %s answered 401, fetching a new token once",
                         self.store, self.website_id, what)
                continue
            if response.status_code == 404:
                raise self._config_error(
                    f"{what}: PA answered 404 ({self._describe_body(response)}): website id unknown to PA or not "
                    f"readable by client {self.client_id!r}; not retried", 404)
            self._check(what, response)
            try:
                return _PageAnswer.model_validate(response.json())
            except (ValueError, ValidationError) as exc:
                detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else "body is not JSON"
                raise PAUnavailableError(self.store, self.website_id,
                                         f"{what}: PA's answer is not a widget page ({detail})") from None

    def _get_page(self, page: int) -> _PageAnswer:
        return self._with_retries(f"widget list page {page}", lambda: self._page_attempt(page))

    def _read_pass(self, stop_on_change: bool) -> _Pass:
        first = self._get_page(1)
        total = first.pagination.total_count
        total_pages = first.pagination.total_pages
        raws: list[Any] = list(first.widgets)
        pages = 1
        change: str | None = None
        page = 2
        while page <= total_pages:
            answer = self._get_page(page)
            pages += 1
            raws.extend(answer.widgets)
            new_total = answer.pagination.total_count
            if new_total != total:
                change = change or (f"PA's widget total changed from {total} to {new_total} "
                                    f"between page 1 and page {page}")
                if stop_on_change:
                    return _Pass(raws, pages, new_total, change)
                total, total_pages = new_total, answer.pagination.total_pages
            page += 1
        if change is None and len(raws) != total:
            change = f"PA reported {total} widgets but its {pages} page(s) held {len(raws)}"
        return _Pass(raws, pages, total, change)

    def fetch_widgets(self) -> WidgetFetch:
        """Every widget of the website, validated. Raises PAConfigError / PAUnavailableError."""
        requests_before = self.requests_made
        restarts = 0
        while True:
            final = restarts >= self.max_restarts
            result = self._read_pass(stop_on_change=not final)
            if result.change is None:
                widgets, rejects = parse_widgets(result.raws)
                return WidgetFetch(
                    store=self.store, website_id=self.website_id, widgets=widgets, rejects=rejects, complete=True,
                    reported_total=result.total, pages=result.pages,
                    requests=self.requests_made - requests_before,
                )
            if not final:
                restarts += 1
                log.info("store %r (PA website %s): %s; starting over (restart %d of %d)",
                         self.store, self.website_id, result.change, restarts, self.max_restarts)
                continue
            reason = (f"{result.change}; gave up after {restarts} restart{'s' if restarts != 1 else ''}, "
                      "keeping what the last pass read")
            log.warning("store %r (PA website %s): incomplete fetch: %s", self.store, self.website_id, reason)
            widgets, rejects = parse_widgets(_drop_shifted_copies(result.raws))
            return WidgetFetch(
                store=self.store, website_id=self.website_id, widgets=widgets, rejects=rejects, complete=False,
                reported_total=result.total, pages=result.pages, requests=self.requests_made - requests_before,
                incomplete_reason=reason,
            )


def _drop_shifted_copies(raws: list[Any]) -> list[Any]:
    """While PA's list moves under the pager a widget can show up on two pages: keep one of identical copies.

    Copies that differ stay, so a real duplicate id still becomes a DUPLICATE_ID reject."""
    seen: dict[str, list[Any]] = {}
    kept: list[Any] = []
    for raw in raws:
        key = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(key, str):
            copies = seen.setdefault(key, [])
            if any(copy == raw for copy in copies):
                continue
            copies.append(raw)
        kept.append(raw)
    return kept
