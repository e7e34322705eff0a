"""Shared fixtures for the PA sandbox and client tests.

Import them explicitly in a test module:
    from pa_widget_pipeline_tests.pa_fixtures import pa_env, pa_server  # noqa: F401

One real uvicorn server per test module (starting one per test costs more than the tests); every test gets a fresh
`PASandbox` behind it, swapped in through `_AppSlot`, plus a fake clock shared by the sandbox and the clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from pa_widget_pipeline.pa.client import PAClient
from pa_widget_pipeline.sandbox.pa_server import PASandbox, make_widgets
from pa_widget_pipeline.sandbox.server import ServerThread
from pa_widget_pipeline_tests.fakes import FakeClock

WEBSITE_A = "b2a7c9d0-1111-4e2f-8a3b-222233334444"
CLIENT_A = "client-a"
SECRET_A = "sEcReT-a-7f3c9e1d2b4a-never-in-messages"
WEBSITE_B = "c3b8d0e1-2222-4f30-9b4c-333344445555"
CLIENT_B = "client-b"
SECRET_B = "sEcReT-b-0a1b2c3d4e5f-never-in-messages"
WIDGETS_A = 25      # page size 10 in most tests → pages of 10, 10, 5
WIDGETS_B = 7


class RecordingSleep:
    """Injected instead of time.sleep: records each wait, waits for nothing."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class _AppSlot:
    """An ASGI app that forwards to whichever sandbox app the current test installed."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope, receive, send) -> None:
        await self.app(scope, receive, send)


@dataclass
class PAEnv:
    sandbox: PASandbox
    url: str
    clock: FakeClock
    sleep: RecordingSleep
    _clients: list[Any] = field(default_factory=list)

    def client(self, **overrides: Any) -> PAClient:
        """A PAClient for website A, against the sandbox, with the fake clock and sleep."""
        options: dict[str, Any] = dict(
            store="store-a", api_url=self.url, auth_url=self.url, website_id=WEBSITE_A, client_id=CLIENT_A,
            client_secret=SECRET_A, page_size=10, timeout=5.0, retry_budget_seconds=20.0,
            sleep=self.sleep, clock=self.clock,
        )
        options.update(overrides)
        client = PAClient(**options)
        self._clients.append(client)
        return client

    def http(self, **kwargs: Any) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 5.0), **kwargs)
        self._clients.append(client)
        return client

    def token(self, client_id: str = CLIENT_A, client_secret: str = SECRET_A) -> str:
        response = self.http().post("/auth/connect/token", data={
            "client_id": client_id, "client_secret": client_secret, "grant_type": "client_credentials"})
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def widget_requests(self, website_id: str | None = WEBSITE_A) -> list:
        return [r for r in self.sandbox.requests if r.path == "/3.0/widgets" and r.website_id == website_id]

    def token_requests(self) -> list:
        return [r for r in self.sandbox.requests if r.path == "/auth/connect/token"]

    def close(self) -> None:
        for client in self._clients:
            client.close()


@pytest.fixture(scope="module")
def pa_server():
    slot = _AppSlot()
    server = ServerThread(slot).start()
    try:
        yield server, slot
    finally:
        server.stop()


@pytest.fixture
def pa_env(pa_server) -> PAEnv:
    server, slot = pa_server
    clock = FakeClock()
    sandbox = PASandbox(token_lifetime_seconds=3600, clock=clock)
    sandbox.add_website(WEBSITE_A, CLIENT_A, SECRET_A, make_widgets(WIDGETS_A, WEBSITE_A))
    sandbox.add_website(WEBSITE_B, CLIENT_B, SECRET_B, make_widgets(WIDGETS_B, WEBSITE_B))
    slot.app = sandbox.app()
    env = PAEnv(sandbox=sandbox, url=server.url, clock=clock, sleep=RecordingSleep())
    try:
        yield env
    finally:
        env.close()
        slot.app = None
