"""Shopify Admin GraphQL client (pure core: no Dagster). Start with `make_shopify_client`."""

from .errors import (
    ShopifyAuthError,
    ShopifyError,
    ShopifyGraphQLError,
    ShopifyMaxCostExceeded,
    ShopifyRetriesExhausted,
    ShopifyShopUnavailable,
)
from .metaobjects import MetaobjectClient, ShopifyDefinitionError, make_shopify_client
from .models import ExistingMetaobject, TransportStats, UpsertItem, UserError, WriteResult
from .transport import BucketState, ShopifyConfigError, ShopifyTransport

__all__ = [
    "BucketState",
    "ExistingMetaobject",
    "MetaobjectClient",
    "ShopifyAuthError",
    "ShopifyConfigError",
    "ShopifyDefinitionError",
    "ShopifyError",
    "ShopifyGraphQLError",
    "ShopifyMaxCostExceeded",
    "ShopifyRetriesExhausted",
    "ShopifyShopUnavailable",
    "ShopifyTransport",
    "TransportStats",
    "UpsertItem",
    "UserError",
    "WriteResult",
    "make_shopify_client",
]
