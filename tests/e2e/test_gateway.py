"""The standalone server over real HTTP: ops endpoints, admin API, app-key auth."""
import time

import httpx
import pytest
from openapi_spec_validator import validate

from tests.fixtures.server import ADMIN_EMAIL, ADMIN_PASSWORD

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def admin(server):
    token = httpx.post(f"{server.url}/admin/v1/sessions",
                       json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).json()["token"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.fixture(scope="module")
def shop(admin):
    r = admin.post("/admin/v1/apps", json={"name": "Shop", "image_type": "fashion"})
    assert r.status_code == 201, r.text
    return r.json()


def test_health_ready_metrics_and_request_id(server):
    r = httpx.get(f"{server.url}/health")
    assert r.json() == {"status": "ok"} and len(r.headers["x-log-id"]) == 32
    ready = httpx.get(f"{server.url}/ready").json()
    assert ready["status"] == "ok" and set(ready["checks"]) == {"database", "object_store", "bus"}
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'magpie_http_requests_total{method="GET",route="/health",status="200"}' in metrics
    # The collector ran at least once since start (the start-up collection before the freeze).
    assert 'magpie_gc_pause_seconds_count{generation="2"}' in metrics


def test_openapi_is_valid_and_lists_every_route(server):
    spec = httpx.get(f"{server.url}/openapi.json").json()
    validate(spec)
    for path in ("/health", "/ready", "/admin/v1/apps", "/admin/v1/apps/{app_id}/schema",
                 "/admin/v1/apps/{app_id}/keys/{access_key}", "/admin/v1/apps/{app_id}/projection",
                 "/v1/app", "/v1/apps/{app_id}/schema"):
        assert path in spec["paths"], path
    search_params = {p["name"] for p in spec["paths"]["/search"]["get"]["parameters"]}
    assert {"im_name", "fq", "fl", "limit", "page", "score", "facets"} <= search_params
    assert "image" in str(spec["paths"]["/uploadsearch"]["post"]["requestBody"])


def test_admin_needs_sign_in(server):
    r = httpx.get(f"{server.url}/admin/v1/apps")
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    r = httpx.post(f"{server.url}/admin/v1/sessions", json={"email": ADMIN_EMAIL, "password": "nope"})
    assert r.status_code == 401


def test_create_app_and_both_auth_styles(server, shop):
    r = httpx.get(f"{server.url}/v1/app", auth=(shop["access_key"], shop["secret_key"]))
    assert r.status_code == 200 and r.json()["scope"] == "full" and r.json()["app_id"] == shop["app_id"]
    r = httpx.get(f"{server.url}/v1/app", params={"access_key": shop["app_key"]})
    assert r.json()["scope"] == "search"
    r = httpx.get(f"{server.url}/v1/app", auth=(shop["access_key"], "wrong"))
    assert r.status_code == 401
    assert r.json() == {"status": "fail", "method": "app",
                        "error": {"code": 11, "message": "Invalid access key or secret key."}}
    assert httpx.get(f"{server.url}/v1/app").status_code == 401


def test_another_applications_id_is_404(server, admin, shop):
    other = admin.post("/admin/v1/apps", json={"name": "Other"}).json()
    mine = httpx.get(f"{server.url}/v1/apps/{shop['app_id']}/schema", params={"access_key": shop["app_key"]})
    assert mine.status_code == 200
    r = httpx.get(f"{server.url}/v1/apps/{other['app_id']}/schema", params={"access_key": shop["app_key"]})
    assert r.status_code == 404 and r.json()["status"] == "fail" and "fields" not in r.text


def test_schema_rules_over_http_keep_the_old_schema(admin, shop):
    url = f"/admin/v1/apps/{shop['app_id']}/schema"
    good = admin.put(url, json={"fields": [{"name": "brand", "type": "string", "searchable": True},
                                           {"name": "price", "type": "float"}]})
    assert good.status_code == 200 and good.json()["version"] == 1
    for fields, culprit in (
        ([{"name": "bad-name", "type": "string"}], "bad-name"),
        ([{"name": "a", "type": "string"}, {"name": "a", "type": "int"}], "a"),
        ([{"name": f"f{i}", "type": "int"} for i in range(31)], "f30"),
        ([{"name": "n" * 33, "type": "int"}], "n" * 33),
        ([{"name": "when", "type": "date"}], "when"),
    ):
        r = admin.put(url, json={"fields": fields})
        assert r.status_code == 400 and r.json()["field"] == culprit, r.text
    assert admin.get(url).json() == good.json()
    assert admin.put(url, json={"fields": "nope"}).status_code == 400
    assert [f["name"] for f in admin.get("/admin/v1/schema/preset").json()][:2] == ["product_url", "category"]


def test_keys_revoke_and_limit(server, admin, shop):
    url = f"/admin/v1/apps/{shop['app_id']}/keys"
    new = admin.post(url, json={"label": "ci"}).json()
    assert "secret_key" in new and all("secret_key" not in k for k in admin.get(url).json())
    assert httpx.get(f"{server.url}/v1/app", auth=(new["access_key"], new["secret_key"])).status_code == 200
    assert admin.delete(f"{url}/{new['access_key']}").json()["revoked_at"]
    assert httpx.get(f"{server.url}/v1/app", auth=(new["access_key"], new["secret_key"])).status_code == 401
    while len([k for k in admin.get(url).json() if not k["revoked_at"]]) < 10:
        assert admin.post(url).status_code == 201
    r = admin.post(url)
    assert r.status_code == 400 and "at most 10" in r.json()["detail"]


def test_viewer_cannot_change_anything(server, admin, shop):
    admin.post("/admin/v1/members", json={"email": "v@example.com", "password": "viewer-pass", "role": "viewer"})
    token = httpx.post(f"{server.url}/admin/v1/sessions",
                       json={"email": "v@example.com", "password": "viewer-pass"}).json()["token"]
    viewer = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{server.url}/admin/v1/apps", headers=viewer).status_code == 200
    r = httpx.post(f"{server.url}/admin/v1/apps", json={"name": "Nope"}, headers=viewer)
    assert r.status_code == 403 and "admin" in r.json()["detail"]


def test_deleting_an_app_removes_its_images(server, admin):
    app = admin.post("/admin/v1/apps", json={"name": "Doomed"}).json()
    folder = server.data_dir / "objects" / app["app_id"] / "images"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(b"jpeg")
    assert admin.delete(f"/admin/v1/apps/{app['app_id']}").status_code == 204
    deadline = time.monotonic() + 10
    while (folder / "a.jpg").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (folder / "a.jpg").exists()
    assert admin.get(f"/admin/v1/apps/{app['app_id']}").status_code == 404
    r = httpx.get(f"{server.url}/v1/app", auth=(app["access_key"], app["secret_key"]))
    assert r.status_code == 401


def test_unknown_route_and_method_are_clean_errors(server):
    r = httpx.get(f"{server.url}/nope")
    assert r.status_code == 404 and r.json()["status"] == "fail"
    assert httpx.get(f"{server.url}/admin/v1/nope").status_code == 404
    assert httpx.delete(f"{server.url}/health").status_code == 405
