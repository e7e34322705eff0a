"""Unit tests of the Shopify transport rules against httpx.MockTransport (no server, fake clock and sleep)."""

from __future__ import annotations

import json

import httpx
import pytest

from pa_widget_pipeline.shopify import (
    ShopifyAuthError,
    ShopifyConfigError,
    ShopifyGraphQLError,
    ShopifyMaxCostExceeded,
    ShopifyRetriesExhausted,
    ShopifyShopUnavailable,
    ShopifyTransport,
)
from pa_widget_pipeline_tests.fakes import FakeClock

TOKEN = "shpat_secret_token_do_not_leak_0123456789"
STORE = "acme-au"


def cost(requested=10, actual=10, maximum=1000.0, available=990.0, rate=50.0):
    return {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {"maximumAvailable": maximum, "currentlyAvailable": available, "restoreRate": rate},
        }
    }


def ok(data=None, **kw):
    return httpx.Response(200, json={"data": data or {"shop": {"id": "1"}}, "extensions": cost(**kw)})


def throttled(status=200, requested=752, available=100, maximum=1000.0, rate=50.0):
    return httpx.Response(
        status,
        json={
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": {
                "cost": {
                    "requestedQueryCost": requested,
                    "actualQueryCost": None,
                    "throttleStatus": {
                        "maximumAvailable": maximum, "currentlyAvailable": available, "restoreRate": rate,
                    },
                }
            },
        },
    )


def gql_error(code, message="boom", **ext):
    return httpx.Response(200, json={"errors": [{"message": message, "extensions": {"code": code, **ext}}]})


class Script:
    """Answers requests from a list of responses (or exceptions, or callables), recording what was sent."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer


def make(script: Script, clock: FakeClock | None = None, **kw) -> tuple[ShopifyTransport, FakeClock]:
    clock = clock or FakeClock()
    transport = ShopifyTransport(
        store=STORE,
        admin_url=kw.pop("admin_url", "https://acme-au.myshopify.com"),
        api_version="2025-10",
        access_token=TOKEN,
        http_client=httpx.Client(transport=httpx.MockTransport(script)),
        sleep=clock.sleep,
        clock=clock,
        rng=lambda: 0.5,
        **kw,
    )
    return transport, clock


def assert_clean(exc: BaseException) -> None:
    text = str(exc) + repr(exc)
    assert TOKEN not in text
    assert STORE in str(exc)


# ------------------------------------------------------------------ configuration
@pytest.mark.parametrize(
    "url",
    ["https://acme.myshopify.com", "http://127.0.0.1:8123/shops/a", "http://127.8.9.10", "http://localhost:9",
     "http://[::1]:8080/x"],
)
def test_accepted_admin_urls(url):
    make(Script(ok()), admin_url=url)


@pytest.mark.parametrize(
    "url",
    ["http://acme.myshopify.com", "http://10.0.0.5", "ftp://acme.myshopify.com",
     f"https://user:{TOKEN}@acme.myshopify.com", "https://"],
)
def test_rejected_admin_urls(url):
    with pytest.raises(ShopifyConfigError) as info:
        make(Script(ok()), admin_url=url)
    assert_clean(info.value)


def test_request_shape_and_no_token_in_repr():
    script = Script(ok({"x": 1}))
    transport, _ = make(script, admin_url="https://acme-au.myshopify.com/")
    assert transport.execute("{ shop { id } }", {"a": 1}) == {"x": 1}
    (request,) = script.requests
    assert request.method == "POST"
    assert str(request.url) == "https://acme-au.myshopify.com/admin/api/2025-10/graphql.json"
    assert request.headers["X-Shopify-Access-Token"] == TOKEN
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {"query": "{ shop { id } }", "variables": {"a": 1}}
    assert TOKEN not in repr(transport)
    assert transport.bucket.maximum == 1000 and transport.bucket_available == 990
    assert transport.stats.requests == 1 and transport.stats.actual_points == 10


# ------------------------------------------------------------------ not retried
@pytest.mark.parametrize(
    "response, cls",
    [
        (httpx.Response(401, text="[API] Invalid API key or access token"), ShopifyAuthError),
        (httpx.Response(403, json={"errors": "[API] This action requires merchant approval"}), ShopifyAuthError),
        (httpx.Response(402, text="Unavailable Shop"), ShopifyShopUnavailable),
        (httpx.Response(423, text="Locked"), ShopifyShopUnavailable),
        (gql_error("ACCESS_DENIED", "Access denied for metaobjects field."), ShopifyAuthError),
        (gql_error("SHOP_INACTIVE", "Shop is inactive"), ShopifyShopUnavailable),
    ],
)
def test_auth_and_unavailable_not_retried(response, cls):
    script = Script(response)
    transport, clock = make(script)
    with pytest.raises(cls) as info:
        transport.execute("{ shop { id } }")
    assert len(script.requests) == 1 and clock.sleeps == []
    assert_clean(info.value)


def test_token_echoed_by_server_is_redacted():
    script = Script(gql_error("ACCESS_DENIED", f"token {TOKEN} lacks read_metaobjects"))
    transport, _ = make(script)
    with pytest.raises(ShopifyAuthError) as info:
        transport.execute("{ shop { id } }")
    assert_clean(info.value)
    assert "[redacted]" in str(info.value) and "read_metaobjects" in str(info.value)


def test_other_graphql_errors_carry_the_messages():
    script = Script(httpx.Response(200, json={"errors": [
        {"message": "Field 'nope' doesn't exist on type 'QueryRoot'", "extensions": {"code": "undefinedField"}}]}))
    transport, _ = make(script)
    with pytest.raises(ShopifyGraphQLError) as info:
        transport.execute("{ nope }")
    assert "Field 'nope' doesn't exist" in str(info.value)
    assert len(script.requests) == 1
    assert_clean(info.value)


def test_max_cost_exceeded_is_raised_for_the_caller_to_split():
    script = Script(gql_error("MAX_COST_EXCEEDED", "Query cost is 2003, which exceeds ...", cost=2003, maxCost=1000))
    transport, _ = make(script)
    with pytest.raises(ShopifyMaxCostExceeded) as info:
        transport.execute("{ big }")
    assert info.value.cost == 2003 and info.value.max_cost == 1000
    assert len(script.requests) == 1


# ------------------------------------------------------------------ retried
def test_5xx_burst_recovers_with_exponential_jittered_backoff():
    script = Script(httpx.Response(503), httpx.Response(502, text="<html>bad gateway</html>"), httpx.Response(500),
                    ok({"y": 2}))
    transport, clock = make(script)
    assert transport.execute("{ y }") == {"y": 2}
    # rng=0.5 -> 0.75 x (0.5, 1, 2)
    assert clock.sleeps == pytest.approx([0.375, 0.75, 1.5])
    assert transport.stats.retries == 3 and transport.stats.requests == 4


def test_5xx_past_max_attempts_gives_retries_exhausted():
    script = Script(httpx.Response(504))
    transport, clock = make(script, max_attempts=4)
    with pytest.raises(ShopifyRetriesExhausted) as info:
        transport.execute("{ y }")
    assert len(script.requests) == 4 and len(clock.sleeps) == 3
    assert "HTTP 504" in str(info.value)
    assert_clean(info.value)


def test_5xx_past_time_budget_gives_retries_exhausted():
    script = Script(httpx.Response(503))
    transport, clock = make(script, max_attempts=50, retry_budget_seconds=5, backoff_max_seconds=100)
    with pytest.raises(ShopifyRetriesExhausted):
        transport.execute("{ y }")
    assert sum(clock.sleeps) <= 5
    assert len(script.requests) < 50


def test_internal_server_error_retried_and_request_id_quoted():
    script = Script(gql_error("INTERNAL_SERVER_ERROR", "Internal error. Looks like something went wrong on our end.",
                              requestId="req-abc-123"))
    transport, _ = make(script, max_attempts=3)
    with pytest.raises(ShopifyRetriesExhausted) as info:
        transport.execute("{ y }")
    assert len(script.requests) == 3
    assert "req-abc-123" in str(info.value)
    assert_clean(info.value)


def test_internal_server_error_once_then_recovers():
    script = Script(gql_error("INTERNAL_SERVER_ERROR", requestId="r1"), ok({"z": 3}))
    transport, _ = make(script)
    assert transport.execute("{ z }") == {"z": 3}
    assert transport.stats.retries == 1


@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout("read timed out"), httpx.ConnectError("refused"),
     httpx.RemoteProtocolError("Server disconnected without sending a response.")],
)
def test_timeouts_and_dropped_connections_are_retried(exc):
    script = Script(exc, exc, ok({"z": 3}))
    transport, clock = make(script)
    assert transport.execute("{ z }") == {"z": 3}
    assert len(script.requests) == 3 and len(clock.sleeps) == 2


def test_dropped_connections_past_attempts():
    script = Script(httpx.RemoteProtocolError("peer closed connection"))
    transport, _ = make(script, max_attempts=3)
    with pytest.raises(ShopifyRetriesExhausted) as info:
        transport.execute("{ z }")
    assert "RemoteProtocolError" in str(info.value)
    assert_clean(info.value)


def test_429_without_throttled_body_honours_retry_after():
    script = Script(httpx.Response(429, headers={"Retry-After": "3"}, text="Too Many Requests"), ok())
    transport, clock = make(script)
    transport.execute("{ shop { id } }")
    assert clock.sleeps == [3.0]
    assert transport.stats.retries == 1 and transport.stats.throttled == 0


# ------------------------------------------------------------------ THROTTLED and pacing
@pytest.mark.parametrize("status", [200, 429])
def test_throttled_waits_exactly_for_the_bucket(status):
    script = Script(throttled(status, requested=752, available=100, rate=50.0), ok({"w": 1}, requested=752,
                                                                                     actual=700, available=300))
    transport, clock = make(script)
    assert transport.execute("{ w }") == {"w": 1}
    margin = ShopifyTransport.throttle_margin_seconds
    assert clock.sleeps == pytest.approx([(752 - 100) / 50.0 + margin])
    assert transport.stats.throttled == 1 and transport.stats.retries == 0
    assert transport.stats.throttle_wait_seconds == pytest.approx(clock.sleeps[0])
    assert transport.stats.requested_points == 752 and transport.stats.actual_points == 700


def test_throttled_does_not_use_up_error_attempts():
    answers = [throttled(requested=500, available=0, rate=100.0)] * 10 + [ok()]
    script = Script(*answers)
    transport, clock = make(script, max_attempts=2, retry_budget_seconds=1)
    transport.execute("{ shop { id } }")
    assert transport.stats.throttled == 10 and transport.stats.retries == 0
    assert len(clock.sleeps) == 10


def test_throttled_for_more_than_the_whole_bucket_asks_the_caller_to_split():
    script = Script(throttled(requested=1500, available=1000, maximum=1000.0))
    transport, _ = make(script)
    with pytest.raises(ShopifyMaxCostExceeded):
        transport.execute("{ w }")


def test_pacing_waits_for_the_bucket_before_sending():
    script = Script(ok(requested=100, actual=100, maximum=1000.0, available=100.0, rate=50.0))
    transport, clock = make(script)
    transport.execute("{ a }", requested_cost=100)  # nothing known yet: sent at once
    assert clock.sleeps == []
    clock.now += 2.0  # the bucket refills 100 points meanwhile -> 200 available
    transport.execute("{ b }", requested_cost=300)
    margin = ShopifyTransport.throttle_margin_seconds
    assert clock.sleeps == pytest.approx([(300 - 200) / 50.0 + margin])
    assert transport.stats.pacing_wait_seconds == pytest.approx(clock.sleeps[0])
    transport.execute("{ c }", requested_cost=50)  # fits the learned (extrapolated) bucket
    assert len(clock.sleeps) == 1


def test_pacing_refuses_a_request_larger_than_the_bucket():
    script = Script(ok(maximum=500.0, available=500.0))
    transport, _ = make(script)
    transport.execute("{ a }")
    with pytest.raises(ShopifyMaxCostExceeded):
        transport.execute("{ b }", requested_cost=600)
    assert len(script.requests) == 1


def test_cost_ceiling_is_conservative_until_learned():
    script = Script(ok(maximum=2000.0, available=2000.0, rate=100.0))
    transport, _ = make(script)
    assert transport.cost_ceiling() == ShopifyTransport.first_request_cost
    transport.execute("{ a }")
    assert transport.cost_ceiling() == 500.0
    assert transport.cost_ceiling(fraction=1.0) == 900.0  # never near the 1000-point query limit
