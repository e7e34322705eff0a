"""Shopify errors. Every message names the store; none ever carries the access token."""

from __future__ import annotations


class ShopifyError(Exception):
    """Base class: `store` is the store key, `code` a short machine-readable reason."""

    code = "SHOPIFY_ERROR"

    def __init__(self, store: str, message: str, *, status: int | None = None):
        self.store = store
        self.status = status
        super().__init__(f"store {store!r}: {message}")


class ShopifyAuthError(ShopifyError):
    """401 (bad or missing token) or 403 / ACCESS_DENIED (missing scope): fix the credentials, no retry."""

    code = "SHOPIFY_AUTH"


class ShopifyShopUnavailable(ShopifyError):
    """402 (frozen, unpaid), 423 (locked) or SHOP_INACTIVE: nothing can be written, no retry."""

    code = "SHOP_UNAVAILABLE"


class ShopifyRetriesExhausted(ShopifyError):
    """Transient trouble (429, 5xx, dropped connections, THROTTLED) outlasted the retry budget."""

    code = "SHOPIFY_UNAVAILABLE"


class ShopifyMaxCostExceeded(ShopifyError):
    """A single document asked for more than the per-query cost limit; callers split the work."""

    code = "MAX_COST_EXCEEDED"

    def __init__(self, store: str, message: str, *, cost: float | None = None, max_cost: float | None = None):
        self.cost = cost
        self.max_cost = max_cost
        super().__init__(store, message)


class ShopifyGraphQLError(ShopifyError):
    """Any other top-level GraphQL error (a bad document, an unknown field): a bug, not retried."""

    code = "GRAPHQL_ERROR"
