"""The dashboard in Debian Chromium (Playwright) against a real server: sign-in → application →
schema → keys → status → catalog → try it → analytics → members; steps run in file order."""
import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.fixtures.browser import artifacts_dir, csrf_of, enable_try_form, new_page, shot, sign_in
from tests.fixtures.catalog import encode, scene, serve_files
from tests.fixtures.http import running
from tests.fixtures.images import serve
from tests.fixtures.server import ADMIN_EMAIL, ADMIN_PASSWORD

pytestmark = pytest.mark.e2e
VIEWER = ("viewer@example.com", "viewer-password")
OTHER = ("other-owner@example.com", "other-password")


@pytest.fixture(scope="module")
def images():
    with serve() as url:
        yield url


@pytest.fixture(scope="module")
def shop():
    """What the steps learn about the application they create (ids and keys)."""
    return {}


@pytest.fixture(scope="module")
def page(chromium, dashboard_server):
    page = new_page(chromium, dashboard_server.url)
    yield page
    page.context.close()


def test_sign_in_refuses_a_wrong_password_then_opens_the_dashboard(page):
    page.goto("/dashboard/apps")
    assert "/dashboard/sign-in" in page.url
    sign_in(page, ADMIN_EMAIL, "not-the-password")
    assert "Wrong email or password" in page.locator("#err-password").inner_text()
    page.fill("#password", ADMIN_PASSWORD)
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_url("**/dashboard/apps")
    cookie = next(c for c in page.context.cookies() if c["name"] == "magpie_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]  # plain http here
    shot(page, "01-signed-in")


def test_create_application_validates_and_shows_the_secret_once(page, shop):
    page.goto("/dashboard/apps")
    page.click("#create-app-form button[type=submit]")  # empty name: refused by AppIn, like the API
    assert page.locator("#err-name").is_visible()
    page.fill("#app-name", "Shoe shop")
    page.check("input[name=image_type][value=fashion]")
    page.click("#create-app-form button[type=submit]")
    shop.update(app_id=page.inner_text("#new-app-id"), access_key=page.inner_text("#new-access-key"),
                secret_key=page.inner_text("#new-secret-key"), app_key=page.inner_text("#new-app-key"))
    assert page.locator("#app-switcher option:checked").inner_text() == "Shoe shop"
    shot(page, "02-app-created")
    page.goto(f"/dashboard/apps/{shop['app_id']}/integration")
    assert shop["secret_key"] not in page.content()  # never shown again


def test_schema_preset_bad_name_and_removal(page, shop):
    page.goto(f"/dashboard/apps/{shop['app_id']}/schema")
    assert page.locator("#schema-warning").is_visible()
    page.click("#preset-form button[type=submit]")
    page.wait_for_url("**/schema?done=preset")
    assert page.locator("tr[data-field=category]").count() == 1
    page.fill("#field-name", "bad-name")
    page.click("#add-field-form button[type=submit]")
    assert "may contain only letters" in page.locator("#err-name").inner_text()
    shot(page, "03-schema-error")
    page.fill("#field-name", "brand")
    page.check("#add-field-form input[name=searchable]")
    page.click("#add-field-form button[type=submit]")
    page.wait_for_url("**/schema?done=added")
    page.click("tr[data-field=gender] .remove-field")  # confirm() is accepted by the fixture
    page.wait_for_url("**/schema?done=removed")
    fields = page.locator("#schema-table tr[data-field]").evaluate_all("rows => rows.map(r => r.dataset.field)")
    assert "gender" not in fields and {"brand", "price", "category"} <= set(fields)
    shot(page, "03-schema-saved")


def test_keys_create_and_revoke(page, dashboard_server, shop):
    page.goto(f"/dashboard/apps/{shop['app_id']}/integration")
    page.fill("#key-label", "ci")
    page.click("#create-key-form button[type=submit]")
    access, secret = page.inner_text("#created-access-key"), page.inner_text("#created-secret-key")
    v1_app = f"{dashboard_server.url}/v1/app"
    assert httpx.get(v1_app, auth=(access, secret)).status_code == 200
    # Snippets per key set: the new one carries its secret (known only now), the others a placeholder.
    mine = page.locator(f"details.snippets[data-access-key='{access}']")
    sdk = f'client.ViSearchAPI("{access}", "{secret}", host="{dashboard_server.url}/")'
    assert sdk in mine.inner_text() and f"{dashboard_server.url}/insert" in mine.inner_text()
    first = page.locator(f"details.snippets[data-access-key='{shop['access_key']}']")
    first_text = first.inner_text()
    assert "YOUR_SECRET_KEY" in first_text and secret not in first_text
    assert f"/v3/events?code={shop['app_key']}" in first_text and f"/search?im_name=" in first_text
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    button = mine.locator("button.copy").first
    button.click()
    page.wait_for_function("b => b.dataset.copied === 'yes'", arg=button.element_handle())
    copied = page.evaluate("navigator.clipboard.readText()")
    assert sdk in copied and copied.startswith("# pip install visearch")
    page.click(f"tr[data-access-key='{access}'] .revoke")
    page.wait_for_url("**/integration?done=revoked")
    assert "revoked" in page.locator(f"tr[data-access-key='{access}']").get_attribute("class")
    assert httpx.get(v1_app, auth=(access, secret)).status_code == 401
    assert secret not in page.content() and page.locator(f"details.snippets[data-access-key='{access}']").count() == 0
    shot(page, "04-keys")


def _sftp_login(port, username, password=None, key=None):
    """Log in over SFTP (own loop, own thread: Playwright's sync API holds this one) and list /."""
    import asyncssh

    async def go():
        async with asyncssh.connect("127.0.0.1", port, username=username, password=password,
                                    client_keys=[key] if key else None, known_hosts=None,
                                    preferred_auth="publickey" if key else "password") as conn:
            async with conn.start_sftp_client() as sftp:
                return await sftp.listdir("/")

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, go()).result(timeout=30)


def test_sftp_setup_creates_the_user_rotates_the_password_and_manages_keys(page, shop):
    import asyncssh

    upload = f"/dashboard/apps/{shop['app_id']}/upload"
    page.goto(upload)
    assert page.locator("#sftp-no-account").is_visible()
    port = int(page.inner_text("#sftp-port"))
    names = page.locator("#sftp-modes").inner_text()
    for name in (f"{shop['app_key']}.csv.gz", f"{shop['app_key']}_FULL.csv.gz", f"{shop['app_key']}_INCREMENT.csv.gz",
                 f"{shop['app_key']}_DELETE.csv.gz", f"{shop['app_key']}_INCREMENT.txt"):
        assert name in names, name
    page.fill("#sftp-username-input", "No!")  # the account use case's rule, shown at the field
    page.click("#sftp-create-form button[type=submit]")
    assert "3 to 64 characters" in page.locator("#err-sftp_username").inner_text()
    page.fill("#sftp-username-input", "")  # default: the application id
    page.click("#sftp-create-form button[type=submit]")
    password = page.inner_text("#sftp-password")
    username = page.inner_text("#sftp-username")
    assert username == shop["app_id"].lower() and len(password) >= 20
    shot(page, "05-sftp-created")
    assert "indexing" in _sftp_login(port, username, password)
    page.goto(upload)
    assert password not in page.content() and page.locator("#sftp-create-form").count() == 0  # shown once

    page.click("#sftp-rotate-form button[type=submit]")  # confirm() accepted by the fixture
    rotated = page.inner_text("#sftp-password")
    assert rotated != password
    try:
        _sftp_login(port, username, password)
        raise AssertionError("the old password still works")
    except asyncssh.PermissionDenied:
        pass

    page.fill("#sftp-public-key", "ssh-ed25519 not-a-key")
    page.click("#sftp-key-form button[type=submit]")
    assert "OpenSSH format" in page.locator("#err-public_key").inner_text()
    key = asyncssh.generate_private_key("ssh-ed25519", comment="ci@magpie")
    page.fill("#sftp-public-key", key.export_public_key().decode())
    page.click("#sftp-key-form button[type=submit]")
    page.wait_for_url("**/upload?done=sftp-key-added*")
    fingerprint = key.get_fingerprint("sha256")
    row = page.locator(f"#sftp-keys tr[data-fingerprint='{fingerprint}']")
    assert "ci@magpie" in row.inner_text()
    assert "indexing" in _sftp_login(port, username, key=key)
    shot(page, "05-sftp-key")
    row.locator(".remove-sftp-key").click()
    page.wait_for_url("**/upload?done=sftp-key-removed*")
    assert page.locator("#sftp-keys").count() == 0 and page.locator("#sftp-no-keys").is_visible()


def test_rename_and_delete_with_confirmation(page):
    page.goto("/dashboard/apps")
    page.fill("#app-name", "Doomed")
    page.click("#create-app-form button[type=submit]")
    app_id = page.inner_text("#new-app-id")
    page.goto(f"/dashboard/apps/{app_id}")
    page.fill("#rename-name", "")
    page.click("#rename-form button[type=submit]")
    assert page.locator("#err-name").is_visible()
    page.fill("#rename-name", "Doomed app")
    page.click("#rename-form button[type=submit]")
    page.wait_for_url("**?done=renamed")
    page.click("#delete-app-link")
    page.fill("#confirm", "Doomed")  # not the exact name
    page.click("#delete-app-form button[type=submit]")
    assert page.locator("#err-confirm").is_visible()
    page.fill("#confirm", "Doomed app")
    page.click("#delete-app-form button[type=submit]")
    page.wait_for_url("**/apps?done=deleted")
    assert "Doomed app" not in page.locator("#app-switcher").inner_text()
    assert page.request.get(f"/dashboard/apps/{app_id}").status == 404


def test_status_lists_a_data_api_transaction_and_the_catalog_its_item(page, dashboard_server, images, shop):
    r = httpx.post(f"{dashboard_server.url}/insert", auth=(shop["access_key"], shop["secret_key"]), data={
        "im_name[0]": "red-shoe", "im_url[0]": f"{images}/ok/a.png", "brand[0]": "Nike", "price[0]": "49.99",
        "category[0]": "shoes", "im_name[1]": "broken", "im_url[1]": f"{images}/404",
        # A second good item, so find-similar on red-shoe has something to find.
        "im_name[2]": "blue-shoe", "im_url[2]": f"{images}/ok/b.jpg", "brand[2]": "Puma", "price[2]": "29.5",
        "category[2]": "shoes"}).json()
    trans_id = r["trans_id"]
    page.goto(f"/dashboard/apps/{shop['app_id']}/status")
    row = page.locator(f"tr[data-trans-id='{trans_id}']")
    assert row.is_visible()
    row.locator(".pct", has_text="100%").wait_for(timeout=90_000)  # the page refreshes while running
    shot(page, "05-status")
    row.locator("a").first.click()
    assert "broken" in page.locator("#tx-errors").inner_text()

    page.goto(f"/dashboard/apps/{shop['app_id']}/catalog")
    item = page.locator(".item[data-im-name='red-shoe']")
    thumb = item.locator("img.thumb")
    thumb.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
    assert "Nike" in item.inner_text() and page.locator(".item[data-im-name='broken']").count() == 0
    shot(page, "06-catalog")
    page.fill("#fq", "price:40,50")
    page.click("#catalog-filters button[type=submit]")
    assert page.locator(".item[data-im-name='red-shoe']").count() == 1
    page.fill("#fq", "price:1,2")
    page.click("#catalog-filters button[type=submit]")
    assert page.locator("#catalog-empty").is_visible()
    page.fill("#fq", "nosuchfield:1")
    page.click("#catalog-filters button[type=submit]")
    assert "not a field of the schema" in page.locator("#err-fq").inner_text()


def test_catalog_filters_page_over_the_whole_index(page, dashboard_server, images, shop):
    auth, base = (shop["access_key"], shop["secret_key"]), dashboard_server.url
    form = {}
    for i in range(30):
        form |= {f"im_name[{i}]": f"bulk-{i:02d}", f"im_url[{i}]": f"{images}/ok/c.png",
                 f"brand[{i}]": "Bulk", f"price[{i}]": str(100 + i), f"category[{i}]": "bags"}
    trans_id = httpx.post(f"{base}/insert", auth=auth, data=form).json()["trans_id"]
    deadline = time.monotonic() + 120
    while httpx.get(f"{base}/insert/status/{trans_id}", auth=auth).json()["result"][0][
            "processed_percent"] < 100:
        assert time.monotonic() < deadline, "the bulk insert did not finish"
        time.sleep(0.5)
    catalog = f"/dashboard/apps/{shop['app_id']}/catalog"

    def shown():
        return set(page.locator("#catalog-grid .item").evaluate_all("l => l.map(e => e.dataset.imName)"))

    # More matches than one page: the pages follow the index's cursor and cover them all once.
    page.goto(catalog)
    page.fill("#fq", "brand:Bulk")
    page.click("#catalog-filters button[type=submit]")
    assert page.inner_text("#catalog-total") == "30 items"
    first = shown()
    assert len(first) == 24 and "Page 1 of 2" in page.inner_text("#catalog-pager")
    page.click("#catalog-next")
    second = shown()
    assert len(second) == 6 and not first & second
    assert first | second == {f"bulk-{i:02d}" for i in range(30)}
    assert page.locator("#catalog-next").count() == 0 and page.locator("#catalog-first").is_visible()
    shot(page, "06b-catalog-filtered-page-2")
    page.click("#catalog-prev")  # back by the trail of cursors: the same first page
    assert shown() == first and "Page 1 of 2" in page.inner_text("#catalog-pager")
    assert page.locator("#catalog-prev").count() == 0
    page.click("#catalog-next")
    assert shown() == second
    # Several filters, and a name search within them.
    page.goto(catalog)
    page.fill("#fq", "brand:Bulk\nprice:110,119.5")
    page.click("#catalog-filters button[type=submit]")
    assert shown() == {f"bulk-{i}" for i in range(10, 20)}
    page.fill("#q", "bulk-2")
    page.click("#catalog-filters button[type=submit]")
    assert shown() == set() and page.locator("#catalog-empty").is_visible()
    page.fill("#fq", "brand:Bulk")
    page.click("#catalog-filters button[type=submit]")
    assert shown() == {f"bulk-{i}" for i in range(20, 30)}
    # Errors stand next to their field, and a forged cursor is refused, not a 500.
    page.fill("#q", "")
    page.select_option("#state", "pending")
    page.click("#catalog-filters button[type=submit]")
    assert "indexed items" in page.locator("#err-state").inner_text()
    response = page.goto(f"{catalog}?fq=brand:Bulk&after=not-a-cursor&page=2")
    assert response.status == 400 and "cursor" in page.locator("#err-page").inner_text()


def test_widget_snippet_pasted_into_a_merchant_page_shows_similar_products(page, dashboard_server, shop):
    # Distinct products, so that recommendations (near-duplicates left out) have some to show.
    auth, host = (shop["access_key"], shop["secret_key"]), dashboard_server.url
    files = {f"w{i}.png": encode(scene(100 + i)) for i in range(4)}
    with serve_files(files) as origin:
        form = {}
        for i in range(4):
            form |= {f"im_name[{i}]": f"widget-{i}", f"im_url[{i}]": f"{origin}/w{i}.png",
                     f"brand[{i}]": "Widget", f"price[{i}]": str(10 + i)}
        trans_id = httpx.post(f"{host}/insert", auth=auth, data=form).json()["trans_id"]
        deadline = time.monotonic() + 120
        while httpx.get(f"{host}/insert/status/{trans_id}", auth=auth).json()["result"][0][
                "processed_percent"] < 100:
            assert time.monotonic() < deadline, "the insert did not finish"
            time.sleep(0.5)

    page.goto(f"/dashboard/apps/{shop['app_id']}/integration")
    first = page.locator(f"details.snippets[data-access-key='{shop['access_key']}']")
    snippet = first.locator("h3:has-text('Web widgets') + .copyable pre").inner_text()
    assert f'<script src="{host}/widgets/v1/magpie-widgets.js" defer></script>' in snippet
    assert f'data-magpie-widget="similar" data-app-key="{shop["app_key"]}" data-host="{host}"' in snippet
    assert 'data-magpie-widget="search-by-image"' in snippet and shop["secret_key"] not in snippet
    sdk = first.locator("h3:has-text('JavaScript SDK') + .copyable pre").inner_text()
    assert f"appKey: '{shop['app_key']}'" in sdk and f"{host}/widgets/v1/magpie-sdk.js" in sdk
    # The snippet as a merchant pastes it, on a page of another origin, for an indexed product.
    pasted = (snippet + sdk).replace("red-dress-1", "widget-0")
    html = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Merchant</title></head>"
            f"<body><h1>Merchant</h1>{pasted}</body></html>").encode()
    with _static_site(html) as merchant:
        shopper = page.context.new_page()
        try:
            with shopper.expect_console_message(lambda m: m.text.startswith("magpie ")) as logged:
                shopper.goto(merchant)
            _, reqid, found = logged.value.text.split(" ")
            assert reqid and found and "widget-0" not in found.split(",")  # never the item itself
            shopper.wait_for_selector("[data-magpie-widget=similar][data-magpie-state=ready]")
            cards = shopper.eval_on_selector_all("[data-magpie-widget=similar] .magpie-card",
                                                 "els => els.map(e => e.dataset.imName)")
            # Recommendations: never the product itself; near-duplicates of one another left out.
            indexed = {"widget-1", "widget-2", "widget-3", "blue-shoe", "red-shoe",
                       *(f"bulk-{i:02d}" for i in range(30))}
            assert cards and "widget-0" not in cards and set(cards) <= indexed
            assert set(cards) & {"widget-1", "widget-2", "widget-3"}
            assert shopper.locator("[data-magpie-widget=search-by-image] .magpie-upload").is_visible()
            shopper.screenshot(path=str(artifacts_dir() / "dashboard-04b-widget-snippet-in-use.png"),
                               full_page=True)
        finally:
            shopper.close()


@contextmanager
def _static_site(html: bytes):
    """One page on its own port (another origin than the gateway)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

    with running(ThreadingHTTPServer(("127.0.0.1", 0), Handler), "merchant-page") as port:
        yield f"http://localhost:{port}/shop.html"


def test_csv_upload_confirms_the_detected_schema_and_shows_progress(page, images):
    page.goto("/dashboard/apps")
    page.fill("#app-name", "CSV shop")  # no schema yet: the upload proposes one
    page.click("#create-app-form button[type=submit]")
    app_id = page.inner_text("#new-app-id")
    page.goto(f"/dashboard/apps/{app_id}/upload")
    assert "_INCREMENT.csv.gz" in page.locator("#sftp-modes").inner_text()
    page.click("#upload-form button[type=submit]")
    assert page.locator("#err-file").is_visible()
    latin1 = {"name": "x.csv", "mimeType": "text/csv", "buffer": b"\xff\xfe"}
    page.set_input_files("#upload-file", files=[latin1])
    page.click("#upload-form button[type=submit]")  # refused by the upload use case, shown in place
    page.locator("#err-file", has_text="UTF-8").wait_for()
    csv = (f"im_name,im_url,brand,price,notes\ncsv-1,{images}/ok/b.png,Puma,19.5,x\n"
           f"csv-2,{images}/404,Adidas,20,y\n").encode()
    page.set_input_files("#upload-file", files=[{"name": "feed.csv", "mimeType": "text/csv", "buffer": csv}])
    page.click("#upload-form button[type=submit]")
    page.wait_for_url("**/uploads/*")
    assert page.locator("#proposed-fields select[name='type.price']").input_value() == "float"
    page.uncheck("#proposed-fields input[name=include][value=notes]")
    shot(page, "05-upload-confirm")
    page.click("#confirm-form button[type=submit]")
    page.locator("#upload-progress-facts .pct", has_text="100%").wait_for(timeout=60_000)
    assert "notes" in page.locator("dl.facts").first.inner_text()  # listed as ignored
    shot(page, "05-upload-done")
    page.click("#upload-transaction")
    assert "csv-2" in page.locator("#tx-errors").inner_text()


def test_try_it_finds_similar_or_says_search_is_not_there_yet(page, shop):
    page.goto(f"/dashboard/apps/{shop['app_id']}/try?im_name=red-shoe")
    if page.locator("#search-unavailable").count():
        assert page.locator("#try-submit").is_disabled()
        shot(page, "07-try-unavailable")
        enable_try_form(page)  # the client itself also notices a missing route (404)
        page.click("#try-submit")
        page.locator("#try-status", has_text="not available").wait_for()
        return
    # Find-similar never returns the query item itself; the CSV upload above indexed others.
    result = page.locator("#try-results .result").first
    try:
        result.wait_for(timeout=30_000)
    except Exception as exc:  # say what the page showed instead
        raise AssertionError(page.locator("#try-status").inner_text()) from exc
    assert re.search(r"score \d\.\d{4}", result.inner_text())
    assert page.locator("#try-results .result[data-im-name='red-shoe']").count() == 0
    shot(page, "07-try")


# The reference's response shape (visearch-api.md §1.3): the client must render exactly this.
SEARCH_ANSWER = {"status": "OK", "method": "search", "error": [], "page": 1, "limit": 10, "total": 1,
                 "result": [{"im_name": "red-shoe", "score": 0.98765,
                             "value_map": {"brand": "Nike", "price": "49.990000"}}],
                 "facets": [{"key": "brand", "items": [{"value": "Nike", "count": 1}]},
                            {"key": "price", "range": {"min": 49.99, "max": 49.99}}],
                 "reqid": "647331357030156285"}


def test_try_it_client_speaks_the_visearch_format(page, shop):
    from tests.fixtures.images import make_image

    seen = []

    def answer(route):
        seen.append(route.request)
        body = dict(SEARCH_ANSWER, method="uploadsearch" if route.request.method == "POST" else "search")
        route.fulfill(json=body)

    page.route("**/search?*", answer)
    page.route("**/uploadsearch", answer)
    try:
        page.goto(f"/dashboard/apps/{shop['app_id']}/try")
        enable_try_form(page)
        page.fill("#try-im-name", "red-shoe")
        page.fill("#fq-price", "10,60")
        page.click("#try-submit")
        result = page.locator("#try-results .result[data-im-name='red-shoe']")
        assert "score 0.9877" in result.inner_text() and "Nike" in result.inner_text()
        query = seen[-1].url
        for part in (f"access_key={shop['app_key']}", "im_name=red-shoe", "score=true", "fq=price%3A10%2C60",
                     "facets=category%2Csub_category%2Cprice%2Cdiscounted_price%2Cbrand"):
            assert part in query, (part, query)
        with page.expect_request("**/search?*") as again:  # a facet value becomes a filter
            page.click("#try-facets-out button:has-text('Nike (1)')")
        assert "fq=brand%3ANike" in again.value.url and page.input_value("#fq-brand") == "Nike"
        page.set_input_files("#try-image", files=[{"name": "q.png", "mimeType": "image/png",
                                                   "buffer": make_image("png")}])
        page.click("#try-submit")
        page.locator("#try-status", has_text="1 result").wait_for()
        upload = seen[-1]
        assert upload.method == "POST" and b'name="image"' in upload.post_data_buffer
        assert shop["app_key"].encode() in upload.post_data_buffer
        shot(page, "07-try-client")
    finally:
        page.unroute("**/search?*")
        page.unroute("**/uploadsearch")


def test_analytics_draws_charts_and_exports_raw_events(page, dashboard_server, shop):
    now = int(time.time() * 1000)
    events = {"uid": "u1", "events": [
        {"action": "product_click", "queryId": "q1", "pid": "red-shoe", "pos": 2, "ts": now},
        {"action": "add_to_cart", "queryId": "q1", "pid": "red-shoe", "ts": now + 1},
        {"action": "transaction", "queryId": "q1", "pid": "red-shoe", "value": 49.99, "currency": "USD",
         "ts": now + 2}]}
    r = httpx.post(f"{dashboard_server.url}/v3/events", params={"code": shop["app_key"]}, json=events)
    assert r.json()["status"] == "OK", r.text
    url = f"/dashboard/apps/{shop['app_id']}/analytics"
    deadline = time.monotonic() + 20
    page.goto(url)
    while "1\nclicks" not in page.locator("#kpis").inner_text() and time.monotonic() < deadline:
        time.sleep(0.5)  # events travel over the bus and a buffered writer before they count
        page.goto(url)
    page.wait_for_function("document.querySelectorAll('.chart.js-plotly-plot').length === 5")
    assert "1\nclicks" in page.locator("#kpis").inner_text()
    shot(page, "08-analytics")
    download = page.request.get(page.get_attribute("#download-csv", "href"))
    assert download.status == 200 and "red-shoe" in download.text()
    page.goto(f"{url}?from=2024-02-01&to=2024-01-01")
    assert "must not be after" in page.locator("#err-from").inner_text()
    page.goto(f"/dashboard/apps/{shop['app_id']}/usage")
    page.wait_for_function("document.querySelectorAll('#chart-usage.js-plotly-plot').length === 1")
    shot(page, "09-usage")


def test_members_viewer_sees_no_edit_controls_and_cannot_post(page, chromium, dashboard_server, shop):
    page.goto("/dashboard/members")
    page.fill("#member-email", VIEWER[0])
    page.fill("#member-password", "short")
    page.click("#add-member-form button[type=submit]")
    assert "at least 8" in page.locator("#err-password").inner_text()
    page.fill("#member-password", VIEWER[1])
    page.select_option("#member-role", "viewer")
    page.click("#add-member-form button[type=submit]")
    page.wait_for_url("**/members?done=added")
    shot(page, "10-members")

    viewer = new_page(chromium, dashboard_server.url)
    try:
        sign_in(viewer, *VIEWER)
        viewer.wait_for_url(f"**/dashboard/apps/{shop['app_id']}")
        assert viewer.locator("#rename-form, #delete-app-link, #create-app-link").count() == 0
        viewer.goto(f"/dashboard/apps/{shop['app_id']}/schema")
        assert viewer.locator("tr[data-field=brand]").count() == 1
        assert viewer.locator("#add-field-form, #preset-form, .remove-field").count() == 0
        viewer.goto(f"/dashboard/apps/{shop['app_id']}/integration")
        assert viewer.locator("#create-key-form, .revoke").count() == 0
        assert "YOUR_SECRET_KEY" in viewer.locator("#snippets").inner_text()
        viewer.goto(f"/dashboard/apps/{shop['app_id']}/upload")  # SFTP: seen, not changed
        assert viewer.inner_text("#sftp-username") == shop["app_id"].lower()
        assert shop["app_key"] + "_INCREMENT.csv.gz" in viewer.locator("#sftp-modes").inner_text()
        assert viewer.locator("#sftp-create-form, #sftp-rotate-form, #sftp-key-form, #sftp-delete-form, "
                              ".remove-sftp-key").count() == 0
        viewer.goto("/dashboard/members")
        assert viewer.locator("#add-member-form, #members-table form").count() == 0
        shot(viewer, "11-viewer")
        token = csrf_of(viewer)  # a valid token: the refusal must come from the role
        attempts = (
            (f"/dashboard/apps/{shop['app_id']}/schema/fields", {"name": "sneaky", "type": "string"}),
            ("/dashboard/apps", {"name": "Nope", "image_type": "general"}),
            (f"/dashboard/apps/{shop['app_id']}/delete", {"confirm": "Shoe shop"}),
            ("/dashboard/members", {"email": "x@example.com", "password": "whatever-1", "role": "owner"}),
            (f"/dashboard/apps/{shop['app_id']}/sftp/password", {}),
            (f"/dashboard/apps/{shop['app_id']}/sftp/keys", {"public_key": "ssh-ed25519 AAAA"}),
            (f"/dashboard/apps/{shop['app_id']}/sftp/delete", {}),
        )
        for path, form in attempts:
            r = viewer.request.post(path, form={"csrf": token, **form}, max_redirects=0)
            assert r.status == 403, (path, r.status)
        viewer.goto(f"/dashboard/apps/{shop['app_id']}/schema")
        assert viewer.locator("tr[data-field=sneaky]").count() == 0
        viewer.goto(f"/dashboard/apps/{shop['app_id']}/upload")
        assert viewer.locator("#sftp-username").count() == 1  # the account is still there
    finally:
        viewer.context.close()


def test_posts_without_the_csrf_token_are_refused(page, shop):
    r = page.request.post(f"/dashboard/apps/{shop['app_id']}/schema/fields",
                          form={"name": "csrfless", "type": "string"}, max_redirects=0)
    assert r.status == 403
    r = page.request.post(f"/dashboard/apps/{shop['app_id']}/schema/fields",
                          form={"csrf": "forged", "name": "csrfless", "type": "string"}, max_redirects=0)
    assert r.status == 403
    for path in ("sftp", "sftp/password", "sftp/delete"):
        r = page.request.post(f"/dashboard/apps/{shop['app_id']}/{path}", form={"csrf": "forged"}, max_redirects=0)
        assert r.status == 403, path


def test_another_account_sees_none_of_these_applications(chromium, dashboard_server, shop):
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from magpie.common.controlplane.secrets import hash_password
    from magpie.common.controlplane.tables import Account, Member
    from magpie.common.settings import Settings

    # No API creates accounts (one installation, one account), so the test writes one directly.
    url = Settings(data_dir=dashboard_server.data_dir).resolved_database_url.replace("+aiosqlite", "")
    engine = create_engine(url)
    with Session(engine) as s, s.begin():
        account = Account(name="Other")
        s.add(account)
        s.flush()
        s.add(Member(account_id=account.id, email=OTHER[0], name="Other", role="owner",
                     password_hash=hash_password(OTHER[1])))
    engine.dispose()
    other = new_page(chromium, dashboard_server.url)
    try:
        sign_in(other, *OTHER)
        other.wait_for_url("**/dashboard/apps")
        assert "Shoe shop" not in other.content()
        app = f"/dashboard/apps/{shop['app_id']}"
        for path in (app, f"{app}/schema", f"{app}/catalog", f"{app}/thumbnail?im_name=red-shoe",
                     f"/dashboard/switch?app_id={shop['app_id']}"):
            assert other.request.get(path, max_redirects=0).status == 404, path
        assert other.request.post(f"{app}/delete", form={"csrf": csrf_of(other), "confirm": "Shoe shop"},
                                  max_redirects=0).status == 404
        shot(other, "12-other-account")
    finally:
        other.context.close()


def test_last_owner_stays_and_sign_out_ends_the_session(page, dashboard_server):
    page.goto("/dashboard/members")
    me = page.locator(f"tr[data-member='{ADMIN_EMAIL}']")
    me.locator("select[name=role]").select_option("viewer")
    me.locator("button:has-text('Change')").click()
    assert "at least one owner" in page.locator(f"tr[data-member='{ADMIN_EMAIL}'] .field-error").inner_text()
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "magpie_session")
    page.click("#sign-out")
    page.wait_for_url("**/dashboard/sign-in")
    assert not [c for c in page.context.cookies() if c["name"] == "magpie_session"]
    r = httpx.get(f"{dashboard_server.url}/admin/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    page.goto("/dashboard/members")
    assert "/dashboard/sign-in?next=" in page.url


def test_session_cookie_is_secure_behind_https(dashboard_server):
    https = {"X-Forwarded-Proto": "https"}  # what a TLS-terminating proxy on this host sends
    with httpx.Client(base_url=dashboard_server.url, headers=https) as client:
        token = client.get("/dashboard/sign-in").cookies["magpie_login_csrf"]  # Secure: sent by hand
        r = client.post("/dashboard/sign-in", headers={"Cookie": f"magpie_login_csrf={token}"},
                        data={"csrf": token, "email": OTHER[0], "password": OTHER[1]})
    cookie = r.headers["set-cookie"]
    assert r.status_code == 303 and "magpie_session=" in cookie
    assert all(flag in cookie for flag in ("HttpOnly", "Secure", "SameSite=lax"))


def test_every_dashboard_form_route_checks_csrf():
    from magpie.gateway import dashboard
    from magpie.gateway.dashboard.session import CSRF_CHECKS
    from magpie.gateway.dashboard.web import served_routes

    def calls(dependant):
        yield dependant.call
        for sub in dependant.dependencies:
            yield from calls(sub)

    posts = [r for r in served_routes(dashboard.router.routes) if "POST" in (r.methods or ())]
    assert len(posts) >= 10
    for route in posts:
        assert any(c in CSRF_CHECKS for c in calls(route.dependant)), route.path
