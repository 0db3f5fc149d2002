"""CSV upload through a real server: proposal, confirmation, one transaction with per-line errors."""

import httpx
import pytest

from tests.fixtures.images import serve
from tests.fixtures.server import ADMIN_EMAIL, ADMIN_PASSWORD, wait_transaction

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def images():
    with serve() as url:
        yield url


@pytest.fixture(scope="module")
def admin(server):
    token = httpx.post(f"{server.url}/admin/v1/sessions",
                       json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def new_app(server, admin, name):
    created = httpx.post(f"{server.url}/admin/v1/apps", json={"name": name}, headers=admin).json()
    return created, (created["access_key"], created["secret_key"])


def upload(server, auth, text):
    return httpx.post(f"{server.url}/v1/uploads", auth=auth, files={"file": ("feed.csv", text.encode(), "text/csv")},
                      timeout=30)


def test_no_schema_proposal_confirm_and_per_line_errors(server, admin, images):
    app, auth = new_app(server, admin, "CSV without schema")
    feed = (
        "im_name,im_url,brand,price,notes\n"
        f'shoe-a,{images}/ok/a.png,Nike,49.99,"Red, with laces\nand a second line"\n'  # lines 2-3
        f"shoe-b,{images}/ok/b.webp,Puma,19.5,plain\n"
        f"missing,{images}/404,Nike,10,gone\n"                                          # 201
        "nourl,,Puma,5,no url\n"                                                       # line 6: 108
        f"cheap,{images}/ok/c.jpg,Nike,cheap,bad price\n"                              # line 7: 109
        f"ragged,{images}/ok/d.png,Nike\n"                                             # line 8
        f"shoe-a,{images}/ok/e.png,Nike,1,again\n"                                     # line 9: 107
        f"tiny,{images}/tiny,Nike,3,too small\n"                                       # 203
    )
    r = upload(server, auth, feed)
    body = r.json()
    assert r.status_code == 200 and body["state"] == "needs_confirmation" and "trans_id" not in body, body
    assert body["columns"] == ["im_name", "im_url", "brand", "price", "notes"]
    assert body["proposed_schema"] == [{"name": "brand", "type": "string", "searchable": True},
                                       {"name": "price", "type": "string", "searchable": False},
                                       {"name": "notes", "type": "string", "searchable": False}]
    # The merchant edits the proposal: price is a float, notes are not wanted.
    fields = [{"name": "brand", "type": "string", "searchable": True},
              {"name": "price", "type": "float", "searchable": True}]
    r = httpx.post(f"{server.url}/v1/uploads/{body['upload_id']}/confirm", auth=auth, json={"fields": fields})
    confirmed = r.json()
    assert r.status_code == 200 and confirmed["state"] == "processing" and confirmed["trans_id"], confirmed
    schema = httpx.get(f"{server.url}/admin/v1/apps/{app['app_id']}/schema", headers=admin).json()
    assert [f["name"] for f in schema["fields"]] == ["brand", "price"]

    result = wait_transaction(server.url, auth, confirmed["trans_id"])
    assert (result["total"], result["success_count"], result["fail_count"]) == (8, 2, 6), result
    errors = {e["im_name"]: (e["error_code"], e["error_message"]) for e in result["error_list"]}
    assert errors["nourl"] == (108, "Line 6: Missing im_url.")
    assert errors["cheap"] == (109, "Line 7: price should be of data type float.")
    assert errors["ragged"] == (400, "Line 8 has 3 cells; the header has 5.")
    assert errors["<line 9>"][0] == 107 and "repeats line 2" in errors["<line 9>"][1]
    assert errors["missing"][0] == 201 and errors["tiny"][0] == 203
    item = httpx.get(f"{server.url}/v1/items/shoe-a", auth=auth).json()["result"][0]
    assert item["value_map"] == {"brand": "Nike", "price": 49.99} and item["im_url"] == f"{images}/ok/a.png"
    got = httpx.get(f"{server.url}/v1/uploads/{body['upload_id']}", auth=auth).json()
    assert (got["state"], got["rows_read"], got["ignored_columns"]) == ("done", 8, ["notes"])

    _, other = new_app(server, admin, "Someone else")
    assert httpx.get(f"{server.url}/v1/uploads/{body['upload_id']}", auth=other).status_code == 404


def test_app_with_schema_processes_at_once(server, admin, images):
    app, auth = new_app(server, admin, "CSV with schema")
    r = httpx.put(f"{server.url}/admin/v1/apps/{app['app_id']}/schema", headers=admin,
                  json={"fields": [{"name": "brand", "type": "string", "searchable": True}]})
    assert r.status_code == 200
    body = upload(server, auth, f"im_name,im_url,brand,colour\nx,{images}/ok/x.jpg,Acme,red\n"
                                f"y,{images}/ok/y.gif,Acme,blue\n").json()
    assert body["state"] == "processing" and body["ignored_columns"] == ["colour"], body
    result = wait_transaction(server.url, auth, body["trans_id"])
    assert (result["total"], result["success_count"], result["fail_count"]) == (2, 2, 0), result
    listed = httpx.get(f"{server.url}/v1/transactions", auth=auth).json()["result"]
    assert [(t["trans_id"], t["source"]) for t in listed] == [(body["trans_id"], "csv")]
    bad = httpx.post(f"{server.url}/v1/uploads", auth=auth, files={"file": ("f.csv", b"im_name,im_url\na,\xff\n")})
    assert bad.status_code == 400 and "offset 17 (line 2)" in bad.json()["error"]["message"]
