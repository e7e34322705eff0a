"""PA errors. Every message names the store and the website id; none carries a secret."""

from __future__ import annotations


class PAError(Exception):
    code = "PA_ERROR"

    def __init__(self, store: str, website_id: str, message: str, *, status: int | None = None):
        self.store = store
        self.website_id = website_id
        self.status = status
        super().__init__(f"store {store!r} (PA website {website_id}): {message}")


class PAConfigError(PAError):
    """400 / 404 / bad credentials: a configuration problem, never retried."""

    code = "PA_CONFIG"


class PAUnavailableError(PAError):
    """429 / 5xx / timeouts / dropped connections outlasted the retry budget."""

    code = "PA_UNAVAILABLE"
