"""PAClient against the PA sandbox over real HTTP, with a fake clock and a sleep that only records its waits."""

from __future__ import annotations

import logging

import httpx
import pytest

from pa_widget_pipeline.pa.client import PAClient
from pa_widget_pipeline.pa.errors import PAConfigError, PAUnavailableError
from pa_widget_pipeline.sandbox.pa_server import REMOVE, PASandbox, make_widget, make_widgets
from pa_widget_pipeline.sandbox.server import ServerThread
from pa_widget_pipeline_tests.pa_fixtures import (  # noqa: F401
    CLIENT_A, CLIENT_B, SECRET_A, SECRET_B, WEBSITE_A, WEBSITE_B, WIDGETS_A, pa_env, pa_server,
)


def _pages(env, website_id=WEBSITE_A):
    return [(r.page, r.status) for r in env.widget_requests(website_id)]


# ---- the happy path -----------------------------------------------------------------------------------------------


def test_full_fetch_reads_every_page(pa_env):
    client = pa_env.client()
    fetch = client.fetch_widgets()
    assert fetch.complete is True and fetch.incomplete_reason is None
    assert [w.id for w in fetch.widgets] == [w["id"] for w in pa_env.sandbox.widgets(WEBSITE_A)]
    assert fetch.rejects == []
    assert (fetch.reported_total, fetch.pages, fetch.total) == (WIDGETS_A, 3, WIDGETS_A)
    assert (fetch.store, fetch.website_id) == ("store-a", WEBSITE_A)
    assert _pages(pa_env) == [(1, 200), (2, 200), (3, 200)]
    assert fetch.requests == 4 == client.requests_made          # one token + three pages
    assert pa_env.sleep.waits == []


def test_default_page_size_is_200(pa_env):
    pa_env.sandbox.set_widgets(WEBSITE_A, make_widgets(401, WEBSITE_A))
    fetch = pa_env.client(page_size=200).fetch_widgets()
    assert fetch.complete and len(fetch.widgets) == 401 and fetch.pages == 3
    assert PAClient.__init__.__kwdefaults__["page_size"] == 200


def test_empty_store_is_a_complete_empty_fetch(pa_env):
    pa_env.sandbox.set_widgets(WEBSITE_A, [])
    fetch = pa_env.client().fetch_widgets()
    assert fetch.complete and fetch.widgets == [] and fetch.reported_total == 0 and fetch.pages == 1


def test_unknown_fields_are_ignored(pa_env):
    widgets = make_widgets(3, WEBSITE_A)
    widgets[1]["futureField"] = {"nested": [1, 2]}
    pa_env.sandbox.set_widgets(WEBSITE_A, widgets)
    fetch = pa_env.client().fetch_widgets()
    assert len(fetch.widgets) == 3 and fetch.rejects == []


# ---- tokens -------------------------------------------------------------------------------------------------------


def test_token_is_cached_across_fetches(pa_env):
    client = pa_env.client()
    client.fetch_widgets()
    client.fetch_widgets()
    assert len(pa_env.token_requests()) == 1
    assert client.tokens_fetched == 1
    assert len(_pages(pa_env)) == 6


def test_token_is_refreshed_shortly_before_it_expires(pa_env):
    client = pa_env.client()
    client.fetch_widgets()
    pa_env.clock.advance(3600 - 61)               # lifetime 3600, margin min(60 s, 10 %) = 60 s: still good
    client.fetch_widgets()
    assert len(pa_env.token_requests()) == 1
    pa_env.clock.advance(2)                       # now inside the margin: refresh before PA would say 401
    client.fetch_widgets()
    assert len(pa_env.token_requests()) == 2
    assert all(status == 200 for _, status in _pages(pa_env))


def test_401_mid_fetch_refreshes_the_token_once_and_retries_the_page(pa_env):
    pa_env.sandbox.faults.expire_tokens_after_pages = 1
    client = pa_env.client()
    fetch = client.fetch_widgets()
    assert fetch.complete and len(fetch.widgets) == WIDGETS_A
    assert _pages(pa_env) == [(1, 200), (2, 401), (2, 200), (3, 200)]
    assert len(pa_env.token_requests()) == 2
    assert pa_env.sleep.waits == []               # a 401 is not a reason to wait


def test_second_401_with_a_fresh_token_is_a_config_error(pa_env):
    # auth_url of one environment, api_url of another: tokens are issued but never accepted
    other = PASandbox(clock=pa_env.clock)
    other.add_website(WEBSITE_A, CLIENT_A, SECRET_A, make_widgets(3, WEBSITE_A))
    with ServerThread(other.app()) as auth_server:
        client = pa_env.client(auth_url=auth_server.url)
        with pytest.raises(PAConfigError) as caught:
            client.fetch_widgets()
    assert caught.value.status == 401
    assert "401" in str(caught.value) and "store-a" in str(caught.value)
    assert _pages(pa_env) == [(1, 401), (1, 401)]
    assert len([r for r in other.requests if r.status == 200]) == 2
    assert pa_env.sleep.waits == []


def test_bad_credentials_are_a_config_error_without_retry(pa_env):
    client = pa_env.client(client_secret="not-the-secret")
    with pytest.raises(PAConfigError) as caught:
        client.fetch_widgets()
    assert "invalid_client" in str(caught.value) and CLIENT_A in str(caught.value)
    assert len(pa_env.token_requests()) == 1 and _pages(pa_env) == []
    assert pa_env.sleep.waits == []


# ---- retries ------------------------------------------------------------------------------------------------------


def test_5xx_on_a_page_is_retried_to_success(pa_env):
    pa_env.sandbox.faults.fail_on_page = {2: 2}
    fetch = pa_env.client().fetch_widgets()
    assert fetch.complete and len(fetch.widgets) == WIDGETS_A
    assert _pages(pa_env) == [(1, 200), (2, 503), (2, 503), (2, 200), (3, 200)]
    assert len(pa_env.sleep.waits) == 2
    first, second = pa_env.sleep.waits
    assert 0.5 <= first <= 1.0 and 1.0 <= second <= 1.5    # exponential backoff (0.5 s, 1 s) plus jitter <= 0.5 s


def test_html_5xx_from_a_proxy_is_retried(pa_env):
    pa_env.sandbox.faults.fail_next = 2          # envelope, then HTML
    pa_env.sandbox.faults.fail_status = 502
    fetch = pa_env.client().fetch_widgets()
    assert fetch.complete
    assert [s for _, s in _pages(pa_env)][:3] == [502, 502, 200]


def test_past_the_budget_is_pa_unavailable_with_status_and_attempts(pa_env):
    pa_env.sandbox.faults.fail_next = 1000
    client = pa_env.client(retry_budget_seconds=5)
    with pytest.raises(PAUnavailableError) as caught:
        client.fetch_widgets()
    attempts = len(pa_env.widget_requests())
    message = str(caught.value)
    assert caught.value.status == 503
    assert f"after {attempts} attempts" in message
    assert "503" in message and "widget list page 1" in message
    assert "store-a" in message and WEBSITE_A in message
    assert sum(pa_env.sleep.waits) <= 5 and len(pa_env.sleep.waits) == attempts - 1
    assert attempts >= 3


def test_pa_down_fails_at_the_token_request(pa_env):
    pa_env.sandbox.faults.down = True
    with pytest.raises(PAUnavailableError) as caught:
        pa_env.client(retry_budget_seconds=3).fetch_widgets()
    assert "token request: HTTP 503" in str(caught.value) and caught.value.status == 503
    assert _pages(pa_env) == []


def test_429_honours_retry_after(pa_env):
    pa_env.sandbox.faults.rate_limit_next = 2
    pa_env.sandbox.faults.retry_after = 3
    fetch = pa_env.client().fetch_widgets()
    assert fetch.complete
    assert pa_env.sleep.waits == [3.0, 3.0]
    assert [s for _, s in _pages(pa_env)] == [429, 429, 200, 200, 200]


def test_retry_after_is_capped(pa_env):
    pa_env.sandbox.faults.rate_limit_next = 1
    pa_env.sandbox.faults.retry_after = 900
    fetch = pa_env.client(max_retry_after=30, retry_budget_seconds=100).fetch_widgets()
    assert fetch.complete and pa_env.sleep.waits == [30.0]


def test_retry_after_beyond_the_budget_gives_up(pa_env):
    pa_env.sandbox.faults.rate_limit_next = 1
    pa_env.sandbox.faults.retry_after = 25
    with pytest.raises(PAUnavailableError) as caught:
        pa_env.client(retry_budget_seconds=10).fetch_widgets()
    assert caught.value.status == 429 and "429" in str(caught.value)
    assert pa_env.sleep.waits == []


def test_dropped_connection_is_retried(pa_env):
    pa_env.sandbox.faults.drop_next = 1
    fetch = pa_env.client().fetch_widgets()
    assert fetch.complete and len(fetch.widgets) == WIDGETS_A
    assert [r.dropped for r in pa_env.widget_requests()] == [True, False, False, False]
    assert len(pa_env.sleep.waits) == 1


def test_timeouts_are_retried_then_reported(pa_env):
    pa_env.sandbox.faults.latency_seconds = 0.5
    with pytest.raises(PAUnavailableError) as caught:
        pa_env.client(timeout=0.1, retry_budget_seconds=3).fetch_widgets()
    assert "Timeout" in str(caught.value)
    assert "attempts" in str(caught.value) and len(pa_env.sleep.waits) >= 1


# ---- configuration errors are not retried --------------------------------------------------------------------------


def test_unknown_website_404_is_not_retried(pa_env):
    client = pa_env.client(website_id="00000000-0000-4000-8000-000000000000")
    with pytest.raises(PAConfigError) as caught:
        client.fetch_widgets()
    assert caught.value.status == 404
    assert "Website not found" in str(caught.value)
    assert "store-a" in str(caught.value) and "00000000-0000-4000-8000-000000000000" in str(caught.value)
    assert len(pa_env.widget_requests("00000000-0000-4000-8000-000000000000")) == 1
    assert pa_env.sleep.waits == [] and client.requests_made == 2


def test_credentials_never_read_another_clients_website(pa_env):
    client = pa_env.client(website_id=WEBSITE_B)      # client A's credentials
    with pytest.raises(PAConfigError) as caught:
        client.fetch_widgets()
    assert caught.value.status == 404 and WEBSITE_B in str(caught.value)
    assert len(pa_env.widget_requests(WEBSITE_B)) == 1


def test_400_is_not_retried(pa_env):
    client = pa_env.client()
    client.page_size = 0                              # the constructor refuses this; PA would answer 400
    with pytest.raises(PAConfigError) as caught:
        client.fetch_widgets()
    assert caught.value.status == 400
    assert len(pa_env.widget_requests()) == 1 and pa_env.sleep.waits == []


# ---- the store moves under the pager -------------------------------------------------------------------------------


def test_total_change_restarts_then_completes(pa_env):
    pa_env.sandbox.faults.mutate_total_after_page = 1
    fetch = pa_env.client().fetch_widgets()
    assert fetch.complete
    assert len(fetch.widgets) == WIDGETS_A + 1 and fetch.reported_total == WIDGETS_A + 1
    assert [p for p, _ in _pages(pa_env)] == [1, 2, 1, 2, 3]
    assert fetch.pages == 3


def test_total_keeps_changing_gives_an_incomplete_fetch(pa_env):
    pa_env.sandbox.faults.mutate_total_after_page = 1
    pa_env.sandbox.faults.mutate_total_times = 100
    fetch = pa_env.client(max_restarts=2).fetch_widgets()
    assert fetch.complete is False
    assert "changed" in fetch.incomplete_reason and "2 restarts" in fetch.incomplete_reason
    assert [p for p, _ in _pages(pa_env)].count(1) == 3          # first pass + two restarts
    assert fetch.rejects == []
    assert len(fetch.widgets) >= WIDGETS_A


def test_max_restarts_zero_reports_incomplete_at_once(pa_env):
    pa_env.sandbox.faults.mutate_total_after_page = 2
    fetch = pa_env.client(max_restarts=0).fetch_widgets()
    assert fetch.complete is False and fetch.incomplete_reason
    assert [p for p, _ in _pages(pa_env)] == [1, 2, 3]


# ---- widget validation --------------------------------------------------------------------------------------------


def test_invalid_widgets_become_rejects_and_the_rest_parse(pa_env):
    good = make_widgets(6, WEBSITE_A)
    bad_type = dict(make_widget(100, WEBSITE_A, 1), type="1")
    no_id = make_widget(101, WEBSITE_A, 1, id=REMOVE)
    bad_name = make_widget(102, WEBSITE_A, 6, name=5)
    pa_env.sandbox.set_widgets(WEBSITE_A, good[:3] + [bad_type, no_id, "not a widget", bad_name] + good[3:])
    fetch = pa_env.client().fetch_widgets()
    assert fetch.complete
    assert [w.id for w in fetch.widgets] == [w["id"] for w in good]
    by_field = {r.field: r for r in fetch.rejects}
    assert set(by_field) == {"type", "id", "(widget)", "name"}
    assert by_field["type"].widget_id == bad_type["id"] and by_field["type"].message
    assert by_field["name"].widget_id == bad_name["id"] and by_field["name"].type == 6
    assert by_field["id"].widget_id is None
    assert all(r.code == "INVALID_WIDGET" for r in fetch.rejects)
    assert fetch.total == 10 == fetch.reported_total


def test_duplicate_ids_are_rejected_not_merged(pa_env):
    widgets = make_widgets(5, WEBSITE_A)
    twin = dict(widgets[1], name="Twin")
    pa_env.sandbox.set_widgets(WEBSITE_A, widgets + [twin])
    fetch = pa_env.client().fetch_widgets()
    assert fetch.complete
    assert {r.code for r in fetch.rejects} == {"DUPLICATE_ID"}
    assert [r.widget_id for r in fetch.rejects] == [widgets[1]["id"]] * 2
    assert len(fetch.widgets) == 4


# ---- URLs and secrets ---------------------------------------------------------------------------------------------


def _client_for(url: str, **overrides) -> PAClient:
    options = dict(store="store-x", api_url=url, auth_url=url, website_id=WEBSITE_A, client_id=CLIENT_A,
                   client_secret=SECRET_A)
    options.update(overrides)
    return PAClient(**options)


@pytest.mark.parametrize("url", [
    "http://pa.example.com", "http://10.0.0.5:8080", "ftp://pa.example.com", "pa.example.com", "",
    "https://user:hunter2pass@pa.example.com", "https://pa.example.com/?token=hunter2pass",
])
def test_unsafe_urls_are_refused(url):
    with pytest.raises(PAConfigError) as caught:
        _client_for(url)
    assert "store-x" in str(caught.value)
    assert "hunter2pass" not in str(caught.value)


def test_http_refused_for_the_auth_url_too():
    with pytest.raises(PAConfigError, match="auth_url"):
        _client_for("https://api.example.com", auth_url="http://auth.example.com")


@pytest.mark.parametrize("url", [
    "https://pa.example.com", "https://pa.example.com/base/", "http://localhost:8080", "http://127.0.0.1",
    "http://127.10.0.2:9000", "http://[::1]:8000",
])
def test_https_and_loopback_urls_are_accepted(url):
    with _client_for(url) as client:
        assert client.api_url == url.rstrip("/")


def test_secrets_never_appear_in_messages_reprs_or_logs(pa_env, caplog):
    caplog.set_level(logging.DEBUG)
    failures: list[BaseException] = []
    tokens: list[str] = []

    def attempt(client: PAClient, arrange=lambda: None) -> None:
        arrange()
        try:
            client.fetch_widgets()
        except Exception as exc:                       # noqa: BLE001 - collecting every failure on purpose
            failures.append(exc)
        if client._token is not None:
            tokens.append(client._token.get_secret_value())
        assert SECRET_A not in repr(client)

    faults = pa_env.sandbox.faults
    attempt(pa_env.client(client_secret=SECRET_B))                                 # invalid_client
    attempt(pa_env.client(website_id=WEBSITE_B))                                    # 404
    ok = pa_env.client(retry_budget_seconds=2)
    ok.fetch_widgets()
    tokens.append(ok._token.get_secret_value())
    attempt(ok, lambda: setattr(faults, "fail_next", 50))                           # budget exhausted, 5xx
    faults.fail_next = 0
    attempt(ok, lambda: setattr(faults, "drop_next", 50))                           # budget exhausted, drops
    faults.drop_next = 0
    attempt(ok, lambda: setattr(faults, "rate_limit_next", 50))                     # budget exhausted, 429
    faults.rate_limit_next = 0
    try:
        _client_for(f"https://{CLIENT_A}:{SECRET_A}@pa.example.com")
    except PAConfigError as exc:
        failures.append(exc)

    assert len(failures) == 6 and len(tokens) >= 1
    texts = [str(exc) for exc in failures] + [repr(exc) for exc in failures] + [caplog.text]
    for text in texts:
        assert SECRET_A not in text and SECRET_B not in text
        for token in tokens:
            assert token not in text
    assert any("retrying" in record.getMessage() for record in caplog.records)   # the logs were exercised


def test_context_manager_closes_its_own_http_client_only(pa_env):
    with pa_env.client() as client:
        client.fetch_widgets()
    assert client._http.is_closed
    shared = httpx.Client()
    with pa_env.client(http_client=shared) as client:
        assert client.fetch_widgets().complete
    assert not shared.is_closed
    shared.close()
