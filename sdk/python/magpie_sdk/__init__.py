"""Python client for Magpie (ViSearch-compatible visual search): sync `Magpie`, async
`AsyncMagpie`, typed results and exceptions."""
from magpie_sdk._http import SDK_VERSION as __version__
from magpie_sdk.aio import AsyncAdmin, AsyncMagpie
from magpie_sdk.client import Admin, Magpie
from magpie_sdk.errors import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    InvalidRequestError,
    MagpieError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransactionTimeout,
    TransportError,
)
from magpie_sdk.types import (
    App,
    AppInfo,
    BulkResult,
    Facet,
    FacetValue,
    Field,
    Hit,
    InsertResult,
    ItemError,
    Key,
    Schema,
    SearchOptions,
    SearchResult,
    TrackResult,
    TransactionStatus,
)

__all__ = [
    "APIError", "Admin", "App", "AppInfo", "AsyncAdmin", "AsyncMagpie", "AuthenticationError",
    "BulkResult", "ConfigurationError", "ConflictError", "Facet", "FacetValue", "Field", "Hit",
    "InsertResult", "InvalidRequestError", "ItemError", "Key", "Magpie", "MagpieError",
    "NotFoundError", "PermissionDeniedError", "RateLimitError", "Schema", "SearchOptions",
    "SearchResult", "ServerError", "TrackResult", "TransactionStatus", "TransactionTimeout",
    "TransportError", "__version__",
]
