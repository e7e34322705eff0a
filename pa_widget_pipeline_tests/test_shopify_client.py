"""The Shopify client against the Shopify sandbox over real HTTP.

Two servers: one whose cost buckets run on a fake clock that the client's injected sleep advances (exact,
instant throttle tests), and one on the real clock (bulk operations and the sustained write).
"""

from __future__ import annotations

import itertools
import json
import logging
import time

import httpx
import pytest

from pa_widget_pipeline_tests.shopify_fixtures import create_contract_definitions, running_shopify_sandbox
from pa_widget_pipeline.shopify import (
    MetaobjectClient,
    ShopifyAuthError,
    ShopifyDefinitionError,
    ShopifyRetriesExhausted,
    ShopifyShopUnavailable,
    ShopifyTransport,
    UpsertItem,
    make_shopify_client,
)
from pa_widget_pipeline.shopify import queries as q
from pa_widget_pipeline.sync.contract import CONTRACT_FIELDS, ContractField
from pa_widget_pipeline_tests.fakes import FakeClock

TYPE = "pa_recommendation_widget"
VERSION = "2025-10"
_keys = itertools.count()


@pytest.fixture(scope="module")
def fake_clock():
    return FakeClock(5000.0)


@pytest.fixture(scope="module")
def fake_env(fake_clock):
    with running_shopify_sandbox(clock=fake_clock, with_definitions=False) as running:
        yield running.sandbox, running.server


@pytest.fixture(scope="module")
def real_env():
    with running_shopify_sandbox(with_definitions=False) as running:
        yield running.sandbox, running.server


class Env:
    """One shop on a sandbox plus a client for it."""

    def __init__(self, sandbox, server, clock: FakeClock | None, *, bucket_size=2000.0, restore_rate=100.0,
                 definition=True, **client_kw):
        self.key = f"shop-{next(_keys)}"
        self.token = f"shpat_{self.key}_secret_0123456789abcdef"
        self.shop = sandbox.add_shop(self.key, self.token, bucket_size=bucket_size, restore_rate=restore_rate)
        if definition:
            create_contract_definitions(self.shop, [TYPE])
        self.clock = clock
        self.sent: list[dict] = []
        self.answers: list[dict] = []
        http = httpx.Client(
            timeout=30,
            event_hooks={"request": [self._on_request], "response": [self._on_response]},
        )
        transport_kw = dict(
            store=self.key,
            admin_url=f"{server.url}/shops/{self.key}",
            api_version=VERSION,
            access_token=self.token,
            http_client=http,
        )
        if clock is not None:
            transport_kw.update(sleep=clock.sleep, clock=clock)
        for name in ("max_attempts", "retry_budget_seconds"):
            if name in client_kw:
                transport_kw[name] = client_kw.pop(name)
        self.transport = ShopifyTransport(**transport_kw)
        self.client = MetaobjectClient(self.transport, **client_kw)
        self.sleeps_before = len(clock.sleeps) if clock else 0

    def _on_request(self, request: httpx.Request) -> None:
        if request.url.path.endswith("graphql.json"):
            self.sent.append(json.loads(request.content))

    def _on_response(self, response: httpx.Response) -> None:
        if response.request.url.path.endswith("graphql.json"):
            response.read()
            try:
                self.answers.append(response.json())
            except ValueError:
                self.answers.append({})

    @property
    def sleeps(self) -> list[float]:
        return self.clock.sleeps[self.sleeps_before :] if self.clock else []

    def error_codes(self) -> list[str]:
        return [
            (e.get("extensions") or {}).get("code")
            for a in self.answers
            for e in (a.get("errors") or [])
            if isinstance(e, dict)
        ]

    def stored(self) -> dict[str, dict]:
        return self.shop.metaobjects.get(TYPE, {})


def items(n: int, start: int = 0, version: str = "1") -> list[UpsertItem]:
    return [
        UpsertItem(
            handle=f"pa-w{i}",
            fields={"pa_widget_id": f"W{i}", "name": f"Widget {i}", "is_active": "true",
                    "sync_hash": f"h{i}-{version}"},
        )
        for i in range(start, start + n)
    ]


def assert_clean(exc: BaseException, env: Env) -> None:
    assert env.token not in str(exc) and env.token not in repr(exc)
    assert env.key in str(exc)


@pytest.fixture
def fenv(fake_env, fake_clock):
    def make(**kw) -> Env:
        return Env(*fake_env, fake_clock, **kw)

    return make


@pytest.fixture
def renv(real_env):
    def make(**kw) -> Env:
        return Env(*real_env, None, **kw)

    return make


# ------------------------------------------------------------------ errors that are not retried
@pytest.mark.parametrize(
    "status, cls", [(401, ShopifyAuthError), (403, ShopifyAuthError), (402, ShopifyShopUnavailable),
                    (423, ShopifyShopUnavailable)]
)
def test_http_errors_not_retried(fenv, status, cls):
    env = fenv()
    env.shop.faults.http_status = status
    with pytest.raises(cls) as info:
        env.client.upsert_metaobjects(TYPE, items(3))
    assert info.value.status == status
    assert len(env.sent) == 1 and env.sleeps == []
    assert_clean(info.value, env)
    assert env.stored() == {}


def test_wrong_token_is_an_auth_error_without_the_token(fenv, fake_env):
    env = fenv()
    sandbox, server = fake_env
    wrong = "shpat_wrong_token_987654321"
    client = make_shopify_client(store=env.key, admin_url=f"{server.url}/shops/{env.key}", api_version=VERSION,
                                 access_token=wrong)
    with pytest.raises(ShopifyAuthError) as info:
        client.definition_by_type(TYPE)
    assert wrong not in str(info.value) and env.key in str(info.value)
    client.close()


# ------------------------------------------------------------------ retried errors
def test_5xx_burst_recovered(fenv):
    env = fenv()
    env.shop.faults.fail_next = 3
    results = env.client.upsert_metaobjects(TYPE, items(5))
    assert all(r.ok for r in results)
    assert env.client.stats.retries == 3 and len(env.sleeps) == 3
    assert len(env.stored()) == 5


def test_5xx_past_budget(fenv):
    env = fenv(max_attempts=3)
    env.shop.faults.fail_next = 10
    try:
        with pytest.raises(ShopifyRetriesExhausted) as info:
            env.client.upsert_metaobjects(TYPE, items(2))
        assert len(env.sent) == 3
        assert "503" in str(info.value)
        assert_clean(info.value, env)
        assert info.value.partial_results == [None, None]
    finally:
        env.shop.faults.fail_next = 0


def test_internal_server_error_quotes_request_id(fenv):
    env = fenv(max_attempts=2)
    env.shop.faults.internal_error_next = 2
    with pytest.raises(ShopifyRetriesExhausted) as info:
        env.client.definition_by_type(TYPE)
    ids = [
        (e.get("extensions") or {}).get("requestId") for a in env.answers for e in a.get("errors") or []
    ]
    assert ids[-1] and ids[-1] in str(info.value)
    assert_clean(info.value, env)
    env.shop.faults.internal_error_next = 1
    assert env.client.definition_by_type(TYPE)["type"] == TYPE  # one INTERNAL_SERVER_ERROR, then recovered


# ------------------------------------------------------------------ THROTTLED and pacing
@pytest.mark.parametrize("http_status", [200, 429])
def test_throttled_waits_exactly(fenv, http_status):
    env = fenv(bucket_size=1000.0, restore_rate=50.0)
    env.shop.faults.throttle_http_status = http_status
    env.shop.bucket.set_available(7)
    data = env.transport.execute(q.upsert_document(3), {
        f"{p}{i}": v for i, it in enumerate(items(3)) for p, v in (
            ("h", {"type": TYPE, "handle": it.handle}),
            ("m", {"handle": it.handle, "fields": [{"key": k, "value": x} for k, x in it.fields.items()]}),
        )
    })
    assert all(data[f"u{i}"]["metaobject"]["id"] for i in range(3))
    assert env.error_codes() == ["THROTTLED"]
    # requested 3 mutations x 10 points, 7 available, 50 a second
    assert env.sleeps == pytest.approx([(30 - 7) / 50.0 + ShopifyTransport.throttle_margin_seconds])
    assert env.transport.stats.throttled == 1 and env.transport.stats.retries == 0


def test_pacing_avoids_throttles_on_a_small_bucket(fenv):
    env = fenv(bucket_size=200.0, restore_rate=10.0, bulk_threshold=None)
    results = env.client.upsert_metaobjects(TYPE, items(60))
    assert all(r.ok for r in results)
    stats = env.client.stats
    assert stats.throttled == 0
    assert stats.pacing_wait_seconds > 0
    # batches sized from the learned bucket (a quarter of 200 points -> 5 upserts), never more than fits
    sizes = [len(s["variables"]) // 2 for s in env.sent]
    assert max(sizes) <= 8 and sizes[-1] <= 5


def test_max_cost_exceeded_splits_the_batch(fenv, monkeypatch):
    env = fenv(bucket_size=100000.0, restore_rate=10000.0, bulk_threshold=None)
    monkeypatch.setattr(q, "MAX_ITEMS_PER_DOCUMENT", 200)
    env.client.definition_by_type(TYPE)  # learn the (large) bucket
    env.client._item_cost["upsert"] = 1.0  # a bad guess: the first document asks for 2000 points
    results = env.client.upsert_metaobjects(TYPE, items(300))
    assert all(r.ok for r in results) and len(env.stored()) == 300
    assert env.error_codes().count("MAX_COST_EXCEEDED") == 1
    sizes = [len(s["variables"]) // 2 for s in env.sent[1:]]
    assert sizes[0] == 200 and sizes[1] == 100 and max(sizes[2:]) <= 90


# ------------------------------------------------------------------ writes
def test_user_errors_map_to_their_item(fenv):
    env = fenv(bulk_threshold=None)
    env.shop.faults.failing_handles = {"pa-w3": "INTERNAL_ERROR", "pa-w11": "INVALID_VALUE"}
    progress: list[tuple[int, int]] = []
    try:
        results = env.client.upsert_metaobjects(TYPE, items(20), on_progress=lambda d, t: progress.append((d, t)))
    finally:
        env.shop.faults.failing_handles = {}
    assert [r.key for r in results] == [f"pa-w{i}" for i in range(20)]
    bad = {r.key: r for r in results if not r.ok}
    assert set(bad) == {"pa-w3", "pa-w11"}
    assert bad["pa-w3"].errors[0].code == "INTERNAL_ERROR"
    assert bad["pa-w11"].errors[0].code == "INVALID_VALUE"
    assert all(r.metaobject_id for r in results if r.ok)
    assert set(env.stored()) == {f"pa-w{i}" for i in range(20)} - {"pa-w3", "pa-w11"}
    assert progress[-1] == (20, 20) and [d for d, _ in progress] == sorted({d for d, _ in progress})


def test_dropped_connection_after_apply_counts_each_item_once(fenv):
    env = fenv(bulk_threshold=None)
    env.shop.faults.drop_after_apply_next = 1
    progress: list[int] = []
    results = env.client.upsert_metaobjects(TYPE, items(12), on_progress=lambda d, t: progress.append(d))
    assert len(results) == 12 and all(r.ok for r in results)
    stored = env.stored()
    assert len(stored) == 12
    assert len({m["id"] for m in stored.values()}) == 12  # no duplicates
    assert {r.metaobject_id for r in results} == {m["id"] for m in stored.values()}
    assert env.client.stats.retries == 1
    assert progress[-1] == 12 and len(progress) == len(set(progress))


def test_invalid_input_fails_only_that_item(fenv):
    env = fenv(bulk_threshold=None)
    bad = UpsertItem(handle="pa-bad", fields={"name": 5})  # type: ignore[dict-item]
    results = env.client.upsert_metaobjects(TYPE, [*items(2), bad])
    assert [r.ok for r in results] == [True, True, False]
    assert results[2].errors[0].code == "INVALID_INPUT" and "'name'" in results[2].errors[0].message


def test_paging_through_more_than_250(fenv):
    env = fenv(bulk_threshold=None, bucket_size=4000.0, restore_rate=1000.0)
    assert all(r.ok for r in env.client.upsert_metaobjects(TYPE, items(610)))
    existing = env.client.list_metaobjects(TYPE)
    assert len(existing) == 610 and len({e.handle for e in existing}) == 610
    by_handle = {e.handle: e for e in existing}
    assert by_handle["pa-w600"].sync_hash == "h600-1"
    assert by_handle["pa-w0"].id == env.stored()["pa-w0"]["id"] and by_handle["pa-w0"].updated_at
    list_calls = [s for s in env.sent if "metaobjects(type" in s["query"]]
    assert len(list_calls) >= 3 and max(s["variables"]["first"] for s in list_calls) == 250


def test_delete_counts_already_gone_as_done(fenv):
    env = fenv(bulk_threshold=None)
    written = env.client.upsert_metaobjects(TYPE, items(6))
    ids = [r.metaobject_id for r in written]
    first = env.client.delete_metaobjects(ids[:2])
    assert all(r.ok for r in first)
    env.shop.faults.failing_handles = {"pa-w4": "INTERNAL_ERROR"}
    try:
        results = env.client.delete_metaobjects(ids)  # two of them are already gone
    finally:
        env.shop.faults.failing_handles = {}
    assert [r.key for r in results] == ids
    assert [r.ok for r in results] == [True, True, True, True, False, True]
    assert results[4].errors[0].code == "INTERNAL_ERROR"
    assert set(env.stored()) == {"pa-w4"}


def test_definitions(fenv):
    env = fenv(definition=False)
    assert env.client.definition_by_type(TYPE) is None
    created = env.client.create_definition(TYPE, "PA recommendation", CONTRACT_FIELDS[:3])
    assert created["type"] == TYPE and [f["key"] for f in created["fieldDefinitions"]] == [
        "pa_widget_id", "name", "location"]
    again = env.client.create_definition(TYPE, "PA recommendation", CONTRACT_FIELDS[:3])  # e.g. a retried create
    assert again["id"] == created["id"]
    updated = env.client.add_definition_fields(created["id"], CONTRACT_FIELDS[3:])
    assert {f["key"] for f in updated["fieldDefinitions"]} == {f.key for f in CONTRACT_FIELDS}
    assert env.client.definition_by_type(TYPE)["id"] == created["id"]
    with pytest.raises(ShopifyDefinitionError) as info:
        env.client.add_definition_fields(created["id"], [ContractField("name", "single_line_text_field")])
    assert "name" in str(info.value) and created["id"] in str(info.value)
    assert_clean(info.value, env)
    with pytest.raises(ShopifyDefinitionError) as info:
        env.client.create_definition(TYPE, "other", [ContractField("other_key", "single_line_text_field")])
    assert TYPE in str(info.value)


# ------------------------------------------------------------------ bulk
def test_bulk_upsert(renv):
    env = renv(bulk_threshold=300, bulk_poll_seconds=0.05)
    env.shop.faults.failing_handles = {"pa-w17": "INVALID_VALUE"}
    progress: list[int] = []
    try:
        results = env.client.upsert_metaobjects(TYPE, items(340), on_progress=lambda d, t: progress.append(d))
    finally:
        env.shop.faults.failing_handles = {}
    assert env.client.stats.bulk_operations == 1 and env.client.stats.bulk_fallbacks == 0
    assert [r.key for r in results] == [f"pa-w{i}" for i in range(340)]
    assert [r.key for r in results if not r.ok] == ["pa-w17"]
    assert results[17].errors[0].code == "INVALID_VALUE"
    assert len(env.stored()) == 339
    assert not any("metaobjectUpsert(handle: $h0" in s["query"] for s in env.sent)  # no batched writes
    assert progress[-1] == 340


def test_bulk_fallback_when_the_operation_fails(renv, caplog):
    env = renv(bulk_threshold=300, bulk_poll_seconds=0.05)
    env.shop.faults.bulk_fail_next = 1  # ends FAILED after half its lines, with a partial result file
    with caplog.at_level(logging.WARNING, logger="pa_widget_pipeline.shopify"):
        results = env.client.upsert_metaobjects(TYPE, items(320))
    assert all(r.ok for r in results) and len(env.stored()) == 320
    assert env.client.stats.bulk_operations == 1 and env.client.stats.bulk_fallbacks == 1
    assert any("FAILED" in r.getMessage() and "batched" in r.getMessage() for r in caplog.records)
    # only what the partial result did not prove written went through batched upserts
    batched = sum(len(s["variables"]) // 2 for s in env.sent if "UpsertMetaobjects" in s["query"])
    assert batched == 160


def test_bulk_fallback_when_it_cannot_start(renv, caplog):
    env = renv(bulk_threshold=300, bulk_poll_seconds=0.05, restore_rate=1000.0)
    env.shop.faults.bulk_start_error_next = 1
    with caplog.at_level(logging.WARNING, logger="pa_widget_pipeline.shopify"):
        results = env.client.upsert_metaobjects(TYPE, items(310))
    assert all(r.ok for r in results) and len(env.stored()) == 310
    assert env.client.stats.bulk_operations == 0 and env.client.stats.bulk_fallbacks == 1
    assert any("could not start" in r.getMessage() for r in caplog.records)


def test_bulk_result_missing_lines_fail_those_items(renv):
    env = renv(bulk_threshold=300, bulk_poll_seconds=0.05)

    def drop_lines(response: httpx.Response) -> None:  # the result file comes back without lines 5 and 300
        if "/results/" in response.request.url.path:
            response.read()
            kept = [ln for ln in response.content.decode().splitlines()
                    if json.loads(ln)["__lineNumber"] not in (5, 300)]
            response._content = ("\n".join(kept) + "\n").encode()

    env.transport.http.event_hooks["response"].insert(0, drop_lines)
    results = env.client.upsert_metaobjects(TYPE, items(305))
    failed = {r.key: r for r in results if not r.ok}
    assert set(failed) == {"pa-w5", "pa-w300"}
    assert failed["pa-w5"].errors[0].code == "BULK_RESULT_MISSING" and "line 5" in failed["pa-w5"].errors[0].message
    assert env.client.stats.bulk_fallbacks == 0


def test_bulk_that_outlasts_its_wait_is_canceled_and_written_batched(renv):
    env = renv(bulk_threshold=300, bulk_poll_seconds=0.05, bulk_max_wait_seconds=0.3, restore_rate=1000.0)
    env.shop.faults.bulk_line_latency_seconds = 0.01  # ~3 s of bulk work
    try:
        results = env.client.upsert_metaobjects(TYPE, items(301))
    finally:
        env.shop.faults.bulk_line_latency_seconds = 0.0
    assert all(r.ok for r in results) and len(env.stored()) == 301
    assert env.client.stats.bulk_fallbacks == 1
    assert any("bulkOperationCancel" in s["query"] for s in env.sent)
    assert next(iter(env.shop.bulk_operations.values()))["status"] in ("CANCELING", "CANCELED")


def test_staged_upload_carries_no_token(renv):
    env = renv(bulk_threshold=300, bulk_poll_seconds=0.05)
    side: list[httpx.Request] = []
    env.transport.http.event_hooks["request"].append(
        lambda r: side.append(r) if not r.url.path.endswith("graphql.json") else None
    )
    results = env.client.upsert_metaobjects(TYPE, items(301))
    assert all(r.ok for r in results)
    upload = [r for r in side if r.method == "POST"]
    assert upload and all("x-shopify-access-token" not in r.headers for r in side)
    assert env.token.encode() not in b"".join(r.read() for r in upload)


# ------------------------------------------------------------------ bulk reads
def seed(env: Env, n: int) -> None:
    """n metaobjects straight into the shop (every fifth without a sync_hash)."""
    for it in items(n):
        fields = dict(it.fields)
        if int(it.handle[4:]) % 5 == 0:
            del fields["sync_hash"]
        env.shop.upsert_metaobject(TYPE, it.handle, fields)


def as_set(existing) -> set[tuple]:
    return {(e.id, e.handle, e.sync_hash, e.updated_at) for e in existing}


def paged_calls(env: Env) -> int:
    return sum(1 for s in env.sent if "metaobjects(type: $type, first" in s["query"])


def test_bulk_read_returns_exactly_what_the_paged_read_returns(renv):
    # 120 metaobjects cost 240 points to page through: more than this 200-point bucket holds
    env = renv(bucket_size=200.0, restore_rate=100000.0, bulk_read_threshold=50, bulk_poll_seconds=0.05)
    seed(env, 120)
    env.client.definition_by_type(TYPE)  # as a sync does: the definition carries metaobjectsCount
    bulk = env.client.list_metaobjects(TYPE)
    stats = env.client.stats
    assert (stats.bulk_queries, stats.bulk_read_fallbacks, paged_calls(env)) == (1, 0, 0)
    assert not any("MetaobjectsCount" in s["query"] for s in env.sent)  # the count came with the definition

    env.client.bulk_read_threshold = None
    paged = env.client.list_metaobjects(TYPE)
    assert paged_calls(env) == 3  # 48 a page from a 200-point bucket
    assert len(bulk) == len(paged) == 120 and as_set(bulk) == as_set(paged)
    assert sum(1 for e in bulk if e.sync_hash is None) == 24


def test_small_stores_keep_the_paged_read_until_the_bucket_runs_low(renv):
    env = renv(bucket_size=2000.0, restore_rate=100.0, bulk_read_threshold=50, bulk_poll_seconds=0.05)
    seed(env, 30)
    assert len(env.client.list_metaobjects(TYPE)) == 30  # at the threshold or under: paged
    seed(env, 60)
    # over the threshold, but 60 x 2 points fit the bucket: paged; without a definition read the count is asked for
    assert len(env.client.list_metaobjects(TYPE)) == 60
    assert sum(1 for s in env.sent if "MetaobjectsCount" in s["query"]) == 2
    assert (env.client.stats.bulk_queries, paged_calls(env)) == (0, 2)

    env.shop.bucket.set_available(0.0)  # another app drained the bucket; the next answer (the count) says so
    assert len(env.client.list_metaobjects(TYPE)) == 60
    assert (env.client.stats.bulk_queries, env.client.stats.bulk_read_fallbacks, paged_calls(env)) == (1, 0, 2)


def test_bulk_read_falls_back_to_pages_when_the_query_fails(renv, caplog):
    env = renv(bucket_size=200.0, restore_rate=100000.0, bulk_read_threshold=50, bulk_poll_seconds=0.05)
    seed(env, 120)  # 240 points to page: more than the bucket
    expected = as_set(env.client._list_paged(TYPE))
    env.shop.faults.bulk_query_fail_next = 1  # ends FAILED with half the objects in a partial file: not used
    with caplog.at_level(logging.WARNING, logger="pa_widget_pipeline.shopify"):
        got = env.client.list_metaobjects(TYPE)
    assert as_set(got) == expected and len(got) == 120
    assert (env.client.stats.bulk_queries, env.client.stats.bulk_read_fallbacks) == (1, 1)
    assert any("FAILED" in r.getMessage() and "page by page" in r.getMessage() for r in caplog.records)


def test_bulk_read_falls_back_when_it_outlasts_its_wait_or_cannot_start(renv, caplog):
    env = renv(bucket_size=200.0, restore_rate=100000.0, bulk_read_threshold=50, bulk_poll_seconds=0.05,
               bulk_read_max_wait_seconds=0.3)
    seed(env, 120)  # 240 points to page: more than the bucket
    expected = as_set(env.client._list_paged(TYPE))
    env.shop.faults.bulk_line_latency_seconds = 0.03  # ~3.6 s of bulk work
    try:
        with caplog.at_level(logging.WARNING, logger="pa_widget_pipeline.shopify"):
            assert as_set(env.client.list_metaobjects(TYPE)) == expected  # timed out, canceled, paged
            assert any("bulkOperationCancel" in s["query"] for s in env.sent)
            [canceled] = env.shop.bulk_operations.values()
            deadline = time.monotonic() + 5
            while canceled["status"] == "CANCELING" and time.monotonic() < deadline:  # it holds its slot
                time.sleep(0.01)
            assert canceled["status"] == "CANCELED"
            # another bulk query of this app is running: this one cannot start
            other = env.transport.execute(q.BULK_RUN_QUERY, {"query": q.bulk_list_query(TYPE)})
            other_id = other["bulkOperationRunQuery"]["bulkOperation"]["id"]
            assert as_set(env.client.list_metaobjects(TYPE)) == expected
    finally:
        env.shop.faults.bulk_line_latency_seconds = 0.0
    env.transport.execute(q.BULK_CANCEL, {"id": other_id})
    assert (env.client.stats.bulk_queries, env.client.stats.bulk_read_fallbacks) == (1, 2)  # the other: not ours
    messages = [r.getMessage() for r in caplog.records]
    assert any("did not finish within 0.3s" in m for m in messages)
    assert any("could not start" in m and "OPERATION_IN_PROGRESS" in m for m in messages)


# ------------------------------------------------------------------ sustained write
def test_sustained_write(renv):
    """3,000 upserts against a 2000-point bucket restoring 1500 a second: paced, not throttled into failure."""
    env = renv(bucket_size=2000.0, restore_rate=1500.0, bulk_threshold=None)
    results = env.client.upsert_metaobjects(TYPE, items(3000))
    stats = env.client.stats
    assert len(results) == 3000 and not [r for r in results if not r.ok]
    assert len(env.stored()) == 3000
    assert stats.throttled / stats.requests < 0.02, stats
    assert env.transport.lowest_available_seen < 0.3 * 2000, "the bucket was barely used"
    assert stats.requests <= 3000 / 20 + 5  # full-size batches
    print(f"\nsustained write: {stats}")


def test_two_writers_sharing_one_bucket_never_fail(renv):
    """Two workers on one shop (each pacing on its own view of the bucket) get THROTTLED answers: those are waited
    out exactly and never use up the error attempts (max_attempts=1 here)."""
    import threading

    first = renv(bucket_size=1000.0, restore_rate=2000.0, bulk_threshold=None, max_attempts=1)
    sandbox_shop = first.shop
    second = MetaobjectClient(ShopifyTransport(
        store=first.key, admin_url=first.transport.admin_url, api_version=VERSION, access_token=first.token,
        max_attempts=1,
    ), bulk_threshold=None)
    out: dict[str, list] = {}

    def write(name, client, start):
        out[name] = client.upsert_metaobjects(TYPE, items(400, start=start))

    threads = [threading.Thread(target=write, args=("a", first.client, 0)),
               threading.Thread(target=write, args=("b", second, 1000))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(r.ok for r in out["a"] + out["b"])
    assert len(sandbox_shop.metaobjects[TYPE]) == 800
    assert first.client.stats.throttled + second.stats.throttled > 0  # they did collide
    assert first.client.stats.retries == second.stats.retries == 0
    print(f"\ntwo writers: {first.client.stats}\n             {second.stats}")
    second.close()


def test_writes_that_fit_in_the_bucket_skip_bulk_even_over_the_threshold():
    from pa_widget_pipeline.shopify.metaobjects import make_shopify_client
    from pa_widget_pipeline_tests.shopify_fixtures import ACCESS_TOKEN, API_VERSION, RECOMMENDATION_TYPE, contract_values

    with running_shopify_sandbox(bucket_size=20000.0, restore_rate=1000.0) as running:
        client = make_shopify_client(store="s", admin_url=running.admin_url, api_version=API_VERSION,
                                     access_token=ACCESS_TOKEN, bulk_threshold=50)
        client.definition_by_type(RECOMMENDATION_TYPE)  # the first answer tells the client the bucket
        fits = [UpsertItem(handle=f"pa-fit-{i}", fields=contract_values(f"fit-{i}")) for i in range(120)]
        assert all(r.ok for r in client.upsert_metaobjects(RECOMMENDATION_TYPE, fits))
        assert running.shop.stats.bulk_operations == 0

        running.shop.bucket.set_available(0.0)
        client.definition_by_type(RECOMMENDATION_TYPE)  # another app drained the bucket; the answer says so
        more = [UpsertItem(handle=f"pa-more-{i}", fields=contract_values(f"more-{i}")) for i in range(120)]
        assert all(r.ok for r in client.upsert_metaobjects(RECOMMENDATION_TYPE, more))
        assert running.shop.stats.bulk_operations == 1
