"""Key scopes: a search-only app key never reaches a data route."""
import pytest

from magpie.common.errors import Unauthorized
from magpie.gateway.api.deps import full_access
from magpie.gateway.controlplane.access import AppAccess

pytestmark = pytest.mark.unit


async def test_search_only_key_is_refused_on_data_routes():
    with pytest.raises(Unauthorized, match="search-only"):
        await full_access(AppAccess(app_id="app_1", access_key="k", scope="search"))


async def test_secret_key_passes_data_routes():
    a = AppAccess(app_id="app_1", access_key="k", scope="full")
    assert await full_access(a) is a
