"""One POST to the Shopify Admin GraphQL endpoint, with the retry, throttle and pacing rules in one place.

Rules (see /work/shared/specs/shopify-admin-metaobjects.md):

* 401 / 403 / ACCESS_DENIED -> ShopifyAuthError; 402 / 423 / SHOP_INACTIVE -> ShopifyShopUnavailable. Never retried.
* 429 without a THROTTLED body (Retry-After honoured), 500/502/503/504, INTERNAL_SERVER_ERROR, timeouts and dropped
  connections are retried with exponential backoff + jitter, within `max_attempts` and `retry_budget_seconds`,
  then ShopifyRetriesExhausted (quoting the last requestId Shopify gave).
* THROTTLED (HTTP 200 or 429): wait exactly (requestedQueryCost - currentlyAvailable) / restoreRate + a small margin
  and send again. Throttled answers do not use up the error attempts, and their waits do not count against the
  error budget: a long write that keeps hitting the bucket slows down, it does not fail.
* MAX_COST_EXCEEDED -> ShopifyMaxCostExceeded (the caller splits its work). Other top-level errors ->
  ShopifyGraphQLError with the messages.
* Cost-aware pacing: every answer's `extensions.cost.throttleStatus` is remembered and extrapolated with the clock;
  a request with a known `requested_cost` waits until the bucket holds it. Before the first answer nothing is known,
  so callers size their first request with `cost_ceiling()` (conservative) and learn from the answer.

A small loop rather than tenacity: THROTTLED waits must not count as attempts, Retry-After overrides the backoff and
the budget excludes throttle waits, which would need three custom tenacity hooks to express.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

import httpx

from ..net import is_loopback_host, parse_retry_after
from .errors import (
    ShopifyAuthError,
    ShopifyError,
    ShopifyGraphQLError,
    ShopifyMaxCostExceeded,
    ShopifyRetriesExhausted,
    ShopifyShopUnavailable,
)
from .models import TransportStats

log = logging.getLogger(__name__)

MAX_QUERY_COST = 1000.0  # Shopify's single-query limit
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})
UNAVAILABLE_STATUSES = frozenset({402, 423})


class ShopifyConfigError(ShopifyError, ValueError):
    """The store's Shopify settings cannot be used as given (bad admin_url, empty token): fix the config."""

    code = "SHOPIFY_CONFIG"


@dataclass(frozen=True)
class BucketState:
    """The cost bucket as Shopify last reported it, at `observed_at` on the transport's clock."""

    maximum: float
    available: float
    restore_rate: float
    observed_at: float

    def available_at(self, now: float) -> float:
        return min(self.maximum, self.available + max(0.0, now - self.observed_at) * self.restore_rate)


def check_url(store: str, url: str, what: str) -> httpx.URL:
    """https only, except for loopback hosts (the sandbox); never credentials in the URL."""
    try:
        parsed = httpx.URL(url)
    except Exception:  # noqa: BLE001 - httpx raises several types for a bad URL
        raise ShopifyConfigError(store, f"{what} is not a valid URL") from None
    if parsed.userinfo:
        raise ShopifyConfigError(store, f"{what} must not carry credentials (user:password@); use access_token")
    if not parsed.host:
        raise ShopifyConfigError(store, f"{what} has no host")
    if parsed.scheme == "https":
        return parsed
    if parsed.scheme == "http" and is_loopback_host(parsed.host):
        return parsed
    raise ShopifyConfigError(
        store, f"{what} must use https (plain http is only allowed for loopback hosts), got {parsed.scheme}://{parsed.host}"
    )


class _Retry(Exception):
    """Internal: this attempt failed in a way worth another try."""

    def __init__(self, problem: str, *, delay: float | None = None, request_id: str | None = None):
        self.problem = problem
        self.delay = delay
        self.request_id = request_id
        super().__init__(problem)


class ShopifyTransport:
    """Sends GraphQL documents to one store's Admin API. Not thread-safe: one per worker."""

    throttle_margin_seconds = 0.02  # added to every exact throttle/pacing wait (rounded currentlyAvailable, clocks)
    first_request_cost = 100.0  # what a caller may ask for before the first answer tells us the bucket
    max_throttle_waits = 60  # per execute(): only a bucket shared with other busy workers gets anywhere near

    def __init__(
        self,
        *,
        store: str,
        admin_url: str,
        api_version: str,
        access_token: str,
        http_client: httpx.Client | None = None,
        max_attempts: int = 6,
        retry_budget_seconds: float = 120,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = 30.0,
        backoff_base_seconds: float = 0.5,
        backoff_max_seconds: float = 20.0,
        rng: Callable[[], float] = random.random,
    ):
        self.store = store
        if not access_token or not access_token.strip():
            raise ShopifyConfigError(store, "access_token is empty")
        if not api_version or "/" in api_version:
            raise ShopifyConfigError(store, f"api_version {api_version!r} is not a version like 2025-10")
        base = check_url(store, admin_url, "admin_url")
        self.admin_url = str(base).rstrip("/")
        self.api_version = api_version
        self.endpoint = f"{self.admin_url}/admin/api/{api_version}/graphql.json"
        self.__token = access_token
        self._own_client = http_client is None
        self.http = http_client or httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)))
        self.max_attempts = max(1, int(max_attempts))
        self.retry_budget_seconds = float(retry_budget_seconds)
        self.sleep = sleep
        self.clock = clock
        self.backoff_base_seconds = backoff_base_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.rng = rng
        self.stats = TransportStats()
        self.bucket: BucketState | None = None
        self.lowest_available_seen: float | None = None  # how deep the bucket was drawn (benchmarks, tests)
        self.last_request_id: str | None = None
        self.last_requested_cost: float | None = None  # Shopify's requestedQueryCost of the last answered request

    # ------------------------------------------------------------------ public
    def __repr__(self) -> str:  # never the token
        return f"ShopifyTransport(store={self.store!r}, endpoint={self.endpoint!r})"

    def close(self) -> None:
        if self._own_client:
            self.http.close()

    def __enter__(self) -> "ShopifyTransport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def bucket_maximum(self) -> float | None:
        return self.bucket.maximum if self.bucket else None

    @property
    def bucket_restore_rate(self) -> float | None:
        return self.bucket.restore_rate if self.bucket else None

    @property
    def bucket_available(self) -> float | None:
        return self.bucket.available_at(self.clock()) if self.bucket else None

    def cost_ceiling(self, fraction: float = 0.25) -> float:
        """How many points one request should ask for: conservative until an answer told us the bucket, then a
        share of the bucket (so no single request waits for a whole refill), never near the 1000-point limit."""
        if self.bucket is None:
            return self.first_request_cost
        return max(1.0, min(MAX_QUERY_COST * 0.9, self.bucket.maximum * fraction))

    def error(self, cls: type[ShopifyError], message: str, **kw: Any) -> ShopifyError:
        """Build an error whose text can never carry the token, even if a server echoed it."""
        return cls(self.store, self.redact(message), **kw)

    def redact(self, text: str) -> str:
        return text.replace(self.__token, "[redacted]") if self.__token else text

    def execute(self, query: str, variables: dict | None = None, *, requested_cost: float | None = None) -> dict:
        """POST one document; return its `data`. Raises the ShopifyError subclasses described in the module doc."""
        payload = {"query": query, "variables": variables or {}}
        started = self.clock()
        throttle_waited = 0.0
        attempts = 0  # attempts that ended in a retryable error
        throttles = 0
        call_request_id: str | None = None
        need = float(requested_cost) if requested_cost else None
        while True:
            if need:
                throttle_waited += self._pace(need)  # waiting for the bucket is not error-budget time either
            try:
                return self._attempt(payload)
            except _Throttled as thr:
                throttles += 1
                self.stats.throttled += 1
                if thr.requested is not None:
                    need = max(need or 0.0, thr.requested)
                    if self.bucket and thr.requested > self.bucket.maximum:
                        raise self.error(
                            ShopifyMaxCostExceeded,
                            f"a request costs {thr.requested:g} points, more than the whole bucket "
                            f"({self.bucket.maximum:g}); split the work",
                            cost=thr.requested,
                            max_cost=self.bucket.maximum,
                        ) from None
                if throttles > self.max_throttle_waits:
                    raise self.error(
                        ShopifyRetriesExhausted, f"still THROTTLED after {throttles} exact waits for the cost bucket"
                    ) from None
                wait = thr.wait if thr.wait is not None else self._backoff(throttles)
                log.debug("store %r: THROTTLED, waiting %.2fs for the cost bucket", self.store, wait)
                self.stats.throttle_wait_seconds += wait
                throttle_waited += wait
                self.sleep(wait)
            except _Retry as retry:
                attempts += 1
                if retry.request_id:
                    self.last_request_id = call_request_id = retry.request_id
                delay = retry.delay if retry.delay is not None else self._backoff(attempts)
                spent = self.clock() - started - throttle_waited
                if attempts >= self.max_attempts or spent + delay > self.retry_budget_seconds:
                    rid = call_request_id
                    detail = f"; last requestId {rid}" if rid and rid not in retry.problem else ""
                    raise self.error(
                        ShopifyRetriesExhausted,
                        f"Shopify Admin API still failing after {attempts} attempt(s) over {spent:.1f}s: "
                        f"{retry.problem}{detail}",
                    ) from None
                self.stats.retries += 1
                log.warning(
                    "store %r: %s; retry %d/%d in %.2fs", self.store, retry.problem, attempts, self.max_attempts - 1, delay
                )
                self.sleep(delay)

    # ----------------------------------------------------------------- private
    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max_seconds, self.backoff_base_seconds * (2 ** max(0, attempt - 1)))
        return ceiling * (0.5 + 0.5 * self.rng())  # "equal jitter": never zero, never over the ceiling

    def _pace(self, need: float) -> float:
        bucket = self.bucket
        if bucket is None or bucket.restore_rate <= 0:
            return 0.0
        if need > bucket.maximum:
            raise self.error(
                ShopifyMaxCostExceeded,
                f"a request of {need:g} points cannot fit a bucket of {bucket.maximum:g}; split the work",
                cost=need,
                max_cost=bucket.maximum,
            )
        available = bucket.available_at(self.clock())
        if available >= need:
            return 0.0
        wait = (need - available) / bucket.restore_rate + self.throttle_margin_seconds
        self.stats.pacing_wait_seconds += wait
        self.sleep(wait)
        return wait

    def _observe_cost(self, body: dict) -> dict | None:
        cost = (body.get("extensions") or {}).get("cost") if isinstance(body, dict) else None
        if not isinstance(cost, dict):
            return None
        status = cost.get("throttleStatus") or {}
        try:
            maximum = float(status["maximumAvailable"])
            available = float(status["currentlyAvailable"])
            rate = float(status["restoreRate"])
        except (KeyError, TypeError, ValueError):
            return cost
        self.bucket = BucketState(maximum, available, rate, self.clock())
        if self.lowest_available_seen is None or available < self.lowest_available_seen:
            self.lowest_available_seen = available
        return cost

    def _throttle_wait(self, cost: dict | None) -> tuple[float | None, float | None]:
        if not cost:
            return None, None
        status = cost.get("throttleStatus") or {}
        try:
            requested = float(cost["requestedQueryCost"])
            available = float(status["currentlyAvailable"])
            rate = float(status["restoreRate"])
        except (KeyError, TypeError, ValueError):
            return None, None
        if rate <= 0:
            return None, requested
        return max(0.0, requested - available) / rate + self.throttle_margin_seconds, requested

    def _attempt(self, payload: dict) -> dict:
        headers = {
            "X-Shopify-Access-Token": self.__token,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self.stats.requests += 1
        try:
            response = self.http.post(self.endpoint, json=payload, headers=headers)
        except httpx.TimeoutException as exc:
            raise _Retry(f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise _Retry(f"connection trouble ({type(exc).__name__}: {self.redact(str(exc))[:200]})") from None

        status = response.status_code
        body: Any = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = None
        cost = self._observe_cost(body) if body else None
        errors = (body or {}).get("errors") if body else None
        if isinstance(errors, (str, dict)):
            errors = [{"message": errors}] if isinstance(errors, str) else [errors]
        codes = [((e.get("extensions") or {}).get("code") if isinstance(e, dict) else None) for e in (errors or [])]
        request_id = response.headers.get("x-request-id")

        if "THROTTLED" in codes and status in (200, 429):
            wait, requested = self._throttle_wait(cost)
            raise _Throttled(wait, requested)
        if status in AUTH_STATUSES:
            what = "the access token was rejected" if status == 401 else "the access token lacks a required scope"
            raise self.error(ShopifyAuthError, f"HTTP {status}: {what}{self._messages(errors)}", status=status)
        if status in UNAVAILABLE_STATUSES:
            what = "the shop is frozen (unpaid)" if status == 402 else "the shop is locked"
            raise self.error(ShopifyShopUnavailable, f"HTTP {status}: {what}", status=status)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise _Retry("HTTP 429 (too many requests)", delay=retry_after)
        if status in RETRYABLE_STATUSES or status >= 500:
            raise _Retry(f"HTTP {status}", request_id=request_id)
        if status != 200:
            raise self.error(
                ShopifyGraphQLError,
                f"HTTP {status} from {self.endpoint}{self._messages(errors)}"
                + (" (check the admin_url, shop and api_version)" if status == 404 else ""),
                status=status,
            )
        if body is None:
            raise _Retry("HTTP 200 with a body that is not a JSON object")

        self.last_requested_cost = _float((cost or {}).get("requestedQueryCost"))
        if cost:
            try:
                self.stats.requested_points += float(cost.get("requestedQueryCost") or 0)
                self.stats.actual_points += float(cost.get("actualQueryCost") or 0)
            except (TypeError, ValueError):
                pass
        if errors:
            if "ACCESS_DENIED" in codes:
                raise self.error(ShopifyAuthError, f"ACCESS_DENIED{self._messages(errors)}", status=status)
            if "SHOP_INACTIVE" in codes:
                raise self.error(ShopifyShopUnavailable, f"SHOP_INACTIVE{self._messages(errors)}", status=status)
            if "INTERNAL_SERVER_ERROR" in codes:
                rid = next(
                    (
                        (e.get("extensions") or {}).get("requestId")
                        for e in errors
                        if isinstance(e, dict) and (e.get("extensions") or {}).get("requestId")
                    ),
                    None,
                ) or request_id
                raise _Retry(
                    "INTERNAL_SERVER_ERROR" + (f" (requestId {rid})" if rid else ""), request_id=rid
                )
            if "MAX_COST_EXCEEDED" in codes:
                ext = next((e.get("extensions") or {} for e in errors if isinstance(e, dict)
                            and (e.get("extensions") or {}).get("code") == "MAX_COST_EXCEEDED"), {})
                raise self.error(
                    ShopifyMaxCostExceeded,
                    f"MAX_COST_EXCEEDED{self._messages(errors)}",
                    cost=_float(ext.get("cost")),
                    max_cost=_float(ext.get("maxCost")),
                )
            raise self.error(ShopifyGraphQLError, f"GraphQL errors{self._messages(errors)}", status=status)
        data = body.get("data")
        if not isinstance(data, dict):
            raise self.error(ShopifyGraphQLError, "the answer carries no data and no errors", status=status)
        return data

    def _messages(self, errors: list | None) -> str:
        if not errors:
            return ""
        parts = []
        for e in errors[:5]:
            if isinstance(e, dict):
                msg = str(e.get("message") or "")[:300]
                code = (e.get("extensions") or {}).get("code")
                parts.append(f"{code}: {msg}" if code else msg)
            else:
                parts.append(str(e)[:300])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        return ": " + "; ".join(parts) + more


class _Throttled(Exception):
    def __init__(self, wait: float | None, requested: float | None):
        self.wait = wait
        self.requested = requested
        super().__init__("THROTTLED")


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
