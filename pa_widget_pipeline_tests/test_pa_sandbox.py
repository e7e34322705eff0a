"""The PA sandbox over real HTTP: what the client is tested against must itself follow the spec."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from pa_widget_pipeline.pa.models import Widget, parse_widget
from pa_widget_pipeline.sandbox.pa_server import REMOVE, PASandbox, make_widget, make_widgets
from pa_widget_pipeline_tests.pa_fixtures import (  # noqa: F401
    CLIENT_A, CLIENT_B, SECRET_A, SECRET_B, WEBSITE_A, WEBSITE_B, WIDGETS_A, WIDGETS_B, pa_env, pa_server,
)

UNAUTHORIZED = {"type": -1, "code": 401, "message": "Unauthorized"}
NOT_FOUND = {"type": -1, "code": 404, "message": "Website not found"}


def _list(env, token, website_id=WEBSITE_A, **params):
    query = {"websiteId": website_id, "page": 1, "pageSize": 10}
    query.update(params)
    query = {k: v for k, v in query.items() if v is not None}
    return env.http().get("/3.0/widgets", params=query, headers={"Authorization": f"Bearer {token}"})


# ---- token --------------------------------------------------------------------------------------------------------


def test_token_issued_for_good_credentials_and_accepted(pa_env):
    response = pa_env.http().post("/auth/connect/token", data={
        "client_id": CLIENT_A, "client_secret": SECRET_A, "grant_type": "client_credentials"})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert len(body["access_token"]) >= 20
    assert _list(pa_env, body["access_token"]).status_code == 200


@pytest.mark.parametrize("form, error", [
    ({"client_id": CLIENT_A, "client_secret": "wrong", "grant_type": "client_credentials"}, "invalid_client"),
    ({"client_id": "nobody", "client_secret": SECRET_A, "grant_type": "client_credentials"}, "invalid_client"),
    ({"client_id": CLIENT_A, "client_secret": SECRET_B, "grant_type": "client_credentials"}, "invalid_client"),
    ({"client_id": CLIENT_A, "client_secret": SECRET_A, "grant_type": "password"}, "unsupported_grant_type"),
    ({"client_id": CLIENT_A, "client_secret": SECRET_A}, "invalid_request"),
])
def test_token_refused(pa_env, form, error):
    response = pa_env.http().post("/auth/connect/token", data=form)
    assert response.status_code == 400
    assert response.json() == {"error": error}


def test_token_endpoint_wants_a_form_post(pa_env):
    http = pa_env.http()
    as_json = http.post("/auth/connect/token", json={
        "client_id": CLIENT_A, "client_secret": SECRET_A, "grant_type": "client_credentials"})
    assert as_json.status_code == 400
    assert http.get("/auth/connect/token").status_code == 405


def test_tokens_really_expire_after_their_lifetime(pa_env):
    token = pa_env.token()
    pa_env.clock.advance(3599)
    assert _list(pa_env, token).status_code == 200
    pa_env.clock.advance(1)
    expired = _list(pa_env, token)
    assert expired.status_code == 401
    assert expired.json() == UNAUTHORIZED
    assert _list(pa_env, pa_env.token()).status_code == 200


def test_expire_all_tokens(pa_env):
    token = pa_env.token()
    pa_env.sandbox.expire_all_tokens()
    assert _list(pa_env, token).status_code == 401


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer not-a-token", "Basic abc", "bearer x y"])
def test_missing_or_unknown_token_is_401_envelope(pa_env, header):
    headers = {} if header is None else {"Authorization": header}
    response = pa_env.http().get("/3.0/widgets", params={"websiteId": WEBSITE_A}, headers=headers)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


# ---- paging -------------------------------------------------------------------------------------------------------


def test_pages_cover_the_store_in_order_without_overlap(pa_env):
    token = pa_env.token()
    seen = []
    for page, expected in [(1, 10), (2, 10), (3, 5)]:
        body = _list(pa_env, token, page=page).json()
        assert len(body["widgets"]) == expected
        assert body["pagination"] == {"page": page, "pageSize": 10, "totalCount": WIDGETS_A, "totalPages": 3}
        seen += [w["id"] for w in body["widgets"]]
    assert seen == [w["id"] for w in pa_env.sandbox.widgets(WEBSITE_A)]
    beyond = _list(pa_env, token, page=4).json()
    assert beyond["widgets"] == [] and beyond["pagination"]["totalCount"] == WIDGETS_A


def test_page_size_above_200_is_clamped_and_reported(pa_env):
    pa_env.sandbox.set_widgets(WEBSITE_A, make_widgets(450, WEBSITE_A))
    body = _list(pa_env, pa_env.token(), pageSize=500).json()
    assert len(body["widgets"]) == 200
    assert body["pagination"] == {"page": 1, "pageSize": 200, "totalCount": 450, "totalPages": 3}


def test_page_defaults_to_1(pa_env):
    body = _list(pa_env, pa_env.token(), page=None, pageSize=None).json()
    assert body["pagination"]["page"] == 1
    assert len(body["widgets"]) == min(50, WIDGETS_A)


@pytest.mark.parametrize("params", [
    {"page": 0}, {"page": -1}, {"page": "x"}, {"page": "1.5"}, {"pageSize": 0}, {"pageSize": "abc"},
    {"websiteId": None},
])
def test_bad_paging_parameters_are_400_envelope(pa_env, params):
    response = _list(pa_env, pa_env.token(), **params)
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == -1 and body["code"] == 400 and body["message"]


# ---- websites and isolation ---------------------------------------------------------------------------------------


def test_unknown_website_is_404_envelope(pa_env):
    response = _list(pa_env, pa_env.token(), website_id=str(uuid.uuid4()))
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


def test_a_token_reads_only_its_own_clients_websites(pa_env):
    token_a, token_b = pa_env.token(), pa_env.token(CLIENT_B, SECRET_B)
    crossed = _list(pa_env, token_a, website_id=WEBSITE_B)
    assert crossed.status_code == 404 and crossed.json() == NOT_FOUND
    assert _list(pa_env, token_b, website_id=WEBSITE_A).status_code == 404
    own = _list(pa_env, token_b, website_id=WEBSITE_B).json()
    assert own["pagination"]["totalCount"] == WIDGETS_B
    assert {w["websiteId"] for w in own["widgets"]} == {WEBSITE_B}


def test_a_client_id_keeps_one_secret():
    sandbox = PASandbox()
    sandbox.add_website("w1", "c", "s1", [])
    with pytest.raises(ValueError):
        sandbox.add_website("w2", "c", "other", [])


# ---- fault switches -----------------------------------------------------------------------------------------------


def test_fail_next_alternates_envelope_and_html_then_serves(pa_env):
    token = pa_env.token()
    pa_env.sandbox.faults.fail_next = 2
    pa_env.sandbox.faults.fail_status = 502
    first, second, third = (_list(pa_env, token) for _ in range(3))
    assert first.status_code == 502 and first.json() == {"type": -1, "code": 502, "message": "Service Unavailable"}
    assert second.status_code == 502 and second.headers["content-type"].startswith("text/html")
    assert "<html>" in second.text
    assert third.status_code == 200
    assert pa_env.sandbox.faults.fail_next == 0


def test_fail_on_page_fails_only_that_page_n_times(pa_env):
    token = pa_env.token()
    pa_env.sandbox.faults.fail_on_page = {2: 2}
    assert _list(pa_env, token, page=1).status_code == 200
    assert [_list(pa_env, token, page=2).status_code for _ in range(3)] == [503, 503, 200]
    assert pa_env.sandbox.faults.fail_on_page == {2: 0}


def test_rate_limit_answers_429_with_retry_after(pa_env):
    token = pa_env.token()
    pa_env.sandbox.faults.rate_limit_next = 1
    pa_env.sandbox.faults.retry_after = 3
    limited = _list(pa_env, token)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3"
    assert limited.json()["code"] == 429
    assert _list(pa_env, token).status_code == 200


def test_drop_next_breaks_the_connection_mid_body(pa_env):
    token = pa_env.token()
    pa_env.sandbox.faults.drop_next = 1
    with pytest.raises(httpx.RemoteProtocolError):
        _list(pa_env, token)
    dropped = pa_env.widget_requests()[-1]
    assert dropped.dropped is True and dropped.status == 200
    assert _list(pa_env, token).status_code == 200


def test_latency_is_added_to_every_request(pa_env):
    pa_env.sandbox.faults.latency_seconds = 1.0
    with pytest.raises(httpx.ReadTimeout):
        pa_env.http(timeout=0.2).post("/auth/connect/token", data={
            "client_id": CLIENT_A, "client_secret": SECRET_A, "grant_type": "client_credentials"})


def test_down_answers_503_everywhere(pa_env):
    token = pa_env.token()
    pa_env.sandbox.faults.down = True
    http = pa_env.http()
    token_answer = http.post("/auth/connect/token", data={
        "client_id": CLIENT_A, "client_secret": SECRET_A, "grant_type": "client_credentials"})
    assert token_answer.status_code == 503
    assert _list(pa_env, token).status_code == 503
    pa_env.sandbox.faults.down = False
    assert _list(pa_env, token).status_code == 200


def test_tokens_expire_after_n_pages(pa_env):
    token = pa_env.token()
    pa_env.sandbox.faults.expire_tokens_after_pages = 2
    assert [_list(pa_env, token, page=p).status_code for p in (1, 2, 3)] == [200, 200, 401]
    assert pa_env.sandbox.faults.expire_tokens_after_pages is None
    fresh = pa_env.token()
    assert [_list(pa_env, fresh, page=p).status_code for p in (3, 1, 2)] == [200, 200, 200]


def test_mutate_total_after_page_appends_one_widget(pa_env):
    token = pa_env.token()
    pa_env.sandbox.faults.mutate_total_after_page = 1
    first = _list(pa_env, token, page=1).json()
    second = _list(pa_env, token, page=2).json()
    assert first["pagination"]["totalCount"] == WIDGETS_A
    assert second["pagination"]["totalCount"] == WIDGETS_A + 1
    appended = pa_env.sandbox.widgets(WEBSITE_A)[-1]
    assert appended["id"] not in {w["id"] for w in make_widgets(WIDGETS_A, WEBSITE_A)}
    assert isinstance(parse_widget(appended), Widget)
    assert pa_env.sandbox.faults.mutate_total_after_page is None       # one-shot by default
    _list(pa_env, token, page=1)
    assert len(pa_env.sandbox.widgets(WEBSITE_A)) == WIDGETS_A + 1


def test_mutate_total_times_fires_repeatedly(pa_env):
    token = pa_env.token()
    pa_env.sandbox.faults.mutate_total_after_page = 1
    pa_env.sandbox.faults.mutate_total_times = 2
    for _ in range(3):
        _list(pa_env, token, page=1)
    ids = [w["id"] for w in pa_env.sandbox.widgets(WEBSITE_A)]
    assert len(ids) == WIDGETS_A + 2 and len(set(ids)) == len(ids)


# ---- request log --------------------------------------------------------------------------------------------------


def test_requests_are_recorded_without_secrets(pa_env):
    token = pa_env.token()
    _list(pa_env, token, page=2)
    _list(pa_env, "bogus", page=1)
    pa_env.http().post("/auth/connect/token", data={
        "client_id": CLIENT_B, "client_secret": "wrong-secret", "grant_type": "client_credentials"})
    log = pa_env.sandbox.requests
    assert [(r.method, r.path, r.website_id, r.client_id, r.page, r.status) for r in log] == [
        ("POST", "/auth/connect/token", None, CLIENT_A, None, 200),
        ("GET", "/3.0/widgets", WEBSITE_A, CLIENT_A, 2, 200),
        ("GET", "/3.0/widgets", WEBSITE_A, None, 1, 401),
        ("POST", "/auth/connect/token", None, CLIENT_B, None, 400),
    ]
    dump = repr(log)
    for secret in (SECRET_A, "wrong-secret", token):
        assert secret not in dump


# ---- make_widget --------------------------------------------------------------------------------------------------


def test_make_widget_is_deterministic_realistic_and_valid():
    a, again = make_widget(3, WEBSITE_A, 6), make_widget(3, WEBSITE_A, 6)
    assert a == again
    assert a["id"] != make_widget(4, WEBSITE_A, 6)["id"]
    assert a["id"] != make_widget(3, WEBSITE_B, 6)["id"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", a["id"])
    assert a["typeName"] == "Merchandising" and a["websiteId"] == WEBSITE_A
    assert set(a["header"]["title"]) == {"collapsed", "expanded"}
    assert a["slots"] and {"recommenderId", "campaignIds", "tacticIds"} <= set(a["slots"][0])
    assert a["updatedAt"] > a["createdAt"]
    widget = parse_widget(a)
    assert isinstance(widget, Widget) and widget.type == 6 and widget.id == a["id"]


def test_make_widget_overrides_and_remove():
    widget = make_widget(0, WEBSITE_A, 1, name="Custom", numberOfSlots=3, id=REMOVE)
    assert widget["name"] == "Custom" and widget["numberOfSlots"] == 3 and "id" not in widget


def test_make_widgets_ids_are_unique_and_types_mixed():
    widgets = make_widgets(300, WEBSITE_A)
    assert len({w["id"] for w in widgets}) == 300
    assert {1, 5, 6} <= {w["type"] for w in widgets}
