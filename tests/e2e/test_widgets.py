"""The web widgets in Debian Chromium (Playwright) on a merchant page of another origin: the
search-by-image widget uploads a real image, pages, searches by URL and filters; the similar
carousel fills in; a click carries the reqid to the product page, whose add-to-cart and
transaction are attributed; every view and click the widgets recorded is in the report."""
import base64
import csv
import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.e2e.js.shop import ITEMS, brand_of, load_shop, report, serve_shop_images
from tests.fixtures.browser import artifacts_dir, new_page
from tests.fixtures.catalog import encode, scene
from tests.fixtures.http import running

pytestmark = pytest.mark.e2e
SCRIPT = "/widgets/v1/magpie-widgets.js"

# The merchant page notes each view and click the widgets announce, in sessionStorage: it
# outlives the navigation to the product page, so the test can compare them with the report.
RECORDER = """<script>for (const kind of ['view', 'click']) document.addEventListener('magpie:' + kind, (e) => {{
  const all = JSON.parse(sessionStorage.getItem('recorded') || '[]');
  all.push({{kind, queryId: e.detail.queryId || e.detail.reqid, pid: e.detail.pid || e.detail.im_name,
             pos: e.detail.pos}});
  sessionStorage.setItem('recorded', JSON.stringify(all));
}});</script>"""

INDEX = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test shop</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;margin:16px}} #sbi{{--magpie-accent:#0a7d4f;--magpie-radius:4px}}
  #similar{{max-width:560px}}</style>
<script src="{host}/widgets/v1/magpie-widgets.js" defer></script>{recorder}</head><body>
<h1>Test shop</h1>
<div id="sbi" data-magpie-widget="search-by-image" data-app-key="{key}" data-host="{host}"
     data-limit="4" data-currency="USD"></div>
<div id="similar" data-magpie-widget="similar" data-app-key="{key}" data-im-name="s2" data-limit="12"
     data-fl="title,price,product_url"></div>
<script>window.results = [];
document.addEventListener('magpie:results', (e) => window.results.push({{id: e.target.id, ...e.detail}}));
</script></body></html>"""

PRODUCT = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{sku}</title>
<script src="{host}/widgets/v1/magpie-widgets.js" defer></script>{recorder}</head><body>
<h1 id="sku">{sku}</h1><button id="buy" type="button">Add to cart and buy</button><p id="cart"></p>
<div id="similar" data-magpie-widget="similar" data-app-key="{key}" data-host="{host}"
     data-im-name="{sku}" data-limit="6" data-fq='["price:2,1000"]'></div>
<script>document.getElementById('buy').addEventListener('click', async () => {{
  // The merchant's own calls: no queryId given, the reqid carried from the widget is used.
  const client = MagpieWidgets.createClient({{appKey: '{key}', host: '{host}'}});
  client.track('add_to_cart', {{pid: '{sku}', price: 42.5, currency: 'USD'}});
  client.track('transaction', {{value: 42.5, currency: 'USD', transId: 'order-7'}});
  const answer = await client.flush();
  document.getElementById('cart').textContent = answer.status + ' ' + answer.result.length;
}});</script></body></html>"""


@contextmanager
def merchant_site(host: str, key: str) -> Iterator[str]:
    """The merchant's storefront on its own port: http://localhost:PORT, another origin."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urlsplit(self.path)
            sku = parse_qs(url.query).get("sku", [""])[0]
            recorder = RECORDER.format()
            if url.path == "/index.html":
                body = INDEX.format(host=host, key=key, recorder=recorder)
            elif url.path == "/product.html" and sku.replace("-", "").isalnum():
                body = PRODUCT.format(host=host, key=key, sku=sku, recorder=recorder)
            elif url.path == "/done.html":
                body = "<!doctype html><title>Done</title><p>No widgets here.</p>"
            else:
                self.send_error(404)
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    with running(ThreadingHTTPServer(("127.0.0.1", 0), Handler), "merchant-site") as port:
        yield f"http://localhost:{port}"


@pytest.fixture(scope="module")
def files():
    with serve_shop_images() as url:
        yield url


@pytest.fixture(scope="module")
def shop(server, files):
    # Product pages are on the merchant's site, which is started per test: a fixed port here.
    return load_shop(server.url, files, "/product.html", name="Widget shop")


def shot(page, name: str) -> None:
    """A full-page screenshot into tests/artifacts/widgets-NAME.png."""
    page.screenshot(path=str(artifacts_dir() / f"widgets-{name}.png"), full_page=True)


@lru_cache(maxsize=1)
def big_photo() -> bytes:
    """Item s5's picture at 2400 px wide: a phone photo's size."""
    return encode(scene(5).resize((2400, 2057)))


def drop(page, selector: str, data: bytes, name: str, mime: str) -> None:
    """Drop a file on an element, as a shopper dragging it from their desktop does."""
    page.evaluate("""([selector, b64, name, mime]) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name, {type: mime}));
        const target = document.querySelector(selector);
        target.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
        target.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", [selector, base64.b64encode(data).decode(), name, mime])


def names(page, selector: str) -> list[str]:
    """The im_names of the cards under `selector`, in order."""
    return page.eval_on_selector_all(f"{selector} .magpie-card", "els => els.map(e => e.dataset.imName)")


def wait_results(page, widget: str, n: int) -> dict:
    """The n-th results event of a widget (1-based), once it has come."""
    page.wait_for_function(f"window.results.filter(r => r.id === '{widget}').length >= {n}")
    return page.evaluate(f"window.results.filter(r => r.id === '{widget}')[{n - 1}]")


def test_widget_files_are_served_with_types_caching_and_cors(server, shop):
    origin = {"Origin": "https://merchant.example"}
    for name in ("magpie-widgets.js", "magpie-sdk.js"):
        r = httpx.get(f"{server.url}/widgets/v1/{name}", headers=origin)
        assert r.status_code == 200 and r.headers["content-type"] == "text/javascript; charset=utf-8"
        assert r.headers["access-control-allow-origin"] == "*" and r.headers["etag"]
        assert r.headers["cache-control"].startswith("public, max-age=300")
        again = httpx.get(f"{server.url}/widgets/v1/{name}", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        plain = httpx.get(f"{server.url}/widgets/v1/{name}", headers={"Accept-Encoding": "identity"})
        assert r.headers["content-encoding"] == "gzip" and "content-encoding" not in plain.headers
        assert r.content == plain.content and int(r.headers["content-length"]) < len(plain.content) / 2
    sdk = httpx.get(f"{server.url}/widgets/v1/magpie-sdk.js").text
    assert "export class MagpieClient" in sdk
    bundle = httpx.get(f"{server.url}{SCRIPT}").text
    assert "export " not in bundle.split("'use strict';", 1)[1].split("\n", 1)[0] and "MagpieWidgets" in bundle
    key = shop["app_key"]
    thumb = httpx.get(f"{server.url}/widgets/v1/thumbnail", params={"access_key": key, "im_name": "s1"})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:2] == b"\xff\xd8"
    assert httpx.get(f"{server.url}/widgets/v1/thumbnail",
                     params={"access_key": key, "im_name": "nope"}).status_code == 404
    bad = httpx.get(f"{server.url}/widgets/v1/thumbnail", params={"access_key": "nope", "im_name": "s1"},
                    headers=origin)
    assert bad.status_code == 401 and bad.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(("path", "method"), [("/search", "GET"), ("/uploadsearch", "POST"),
                                              ("/recommendation", "GET"), ("/colorsearch", "GET"),
                                              ("/v3/events", "POST"), ("/v3/__va.gif", "GET")])
def test_public_routes_answer_preflights_from_any_origin(server, path, method):
    r = httpx.options(f"{server.url}{path}", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type,x-requested-with"})
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "*"
    assert method in r.headers["access-control-allow-methods"]
    allowed = r.headers["access-control-allow-headers"].lower()
    assert "content-type" in allowed and "x-requested-with" in allowed and "authorization" not in allowed


def test_search_answers_cross_origin_and_private_routes_do_not(server, shop):
    origin = {"Origin": "https://shop.example"}
    r = httpx.get(f"{server.url}/search", params={"access_key": shop["app_key"], "im_name": "s1"},
                  headers=origin)
    assert r.json()["status"] == "OK" and r.headers["access-control-allow-origin"] == "*"
    assert "X-Log-ID" in r.headers["access-control-expose-headers"]
    private = httpx.get(f"{server.url}/v1/app", params={"access_key": shop["app_key"]}, headers=origin)
    assert "access-control-allow-origin" not in private.headers
    preflight = httpx.options(f"{server.url}/v1/items", headers={
        **origin, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_widgets_on_a_merchant_page_search_filter_page_and_are_tracked(chromium, server, shop, files,
                                                                        tmp_path):
    query = tmp_path / "photo.png"
    query.write_bytes(next(it["image"] for it in ITEMS if it["im_name"] == "s5"))
    with merchant_site(server.url, shop["app_key"]) as site:
        page = new_page(chromium, site)
        # Chromium does not hand multipart bodies with files to Playwright: the page notes the
        # form fields of each upload search itself.
        page.add_init_script("""window.uploads = []; const original = window.fetch;
            window.fetch = (url, init) => { if (String(url).includes('/uploadsearch')) {
                const image = init.body.get('image');
                window.uploads.push({keys: [...init.body.keys()], type: image && image.type,
                                     size: image && image.size}); }
                return original(url, init); };""")
        page.goto("/index.html")

        # The carousel (data-host left out: the script's origin) fills in without the item itself.
        similar = wait_results(page, "similar", 1)
        carousel = names(page, "#similar")
        assert similar["count"] == len(carousel) >= 4 and "s2" not in carousel
        viewed = page.locator("#similar .magpie-card[data-magpie-viewed]")
        first_views = viewed.count()
        assert 0 < first_views < len(carousel)  # cards scrolled out of sight are not views
        assert page.is_disabled("#similar .magpie-prev") and page.is_enabled("#similar .magpie-next")
        page.focus("#similar .magpie-track")
        page.keyboard.press("ArrowRight")  # the carousel scrolls from the keyboard too
        page.wait_for_function(f"document.querySelectorAll('#similar [data-magpie-viewed]').length > {first_views}")
        page.wait_for_function("!document.querySelector('#similar .magpie-prev').disabled")
        page.click("#similar .magpie-next")

        # Before a search: no filters, no pager.
        assert not page.is_visible("#sbi .magpie-pager") and not page.is_visible("#sbi .magpie-filters")

        # Upload a real image: the item it shows comes first.
        page.set_input_files("#sbi input[type=file]", str(query))
        first = wait_results(page, "sbi", 1)
        page.wait_for_selector("#sbi[data-magpie-state=ready]")
        assert names(page, "#sbi")[0] == "s5" and first["page"] == 1 and first["total"] == len(ITEMS)
        assert page.inner_text("#sbi .magpie-page") == f"Page 1 of {-(-len(ITEMS) // 4)}"
        page.wait_for_function("Array.from(document.querySelectorAll('#sbi img'))"
                               ".every(i => i.complete && i.naturalWidth > 0)")
        assert all(page.eval_on_selector_all("#sbi img", "els => els.map(e => e.alt)"))
        # Themed by the page's CSS variable (--magpie-accent: #0a7d4f on #sbi).
        assert page.eval_on_selector("#sbi .magpie-upload", "b => getComputedStyle(b).backgroundColor") \
            == "rgb(10, 125, 79)"
        shot(page, "search")

        # Page 2 asks by im_id: the image is not uploaded again.
        page1 = names(page, "#sbi")
        page.click("#sbi .magpie-next")
        second = wait_results(page, "sbi", 2)
        assert second["page"] == 2 and not set(names(page, "#sbi")) & set(page1)
        uploads = page.evaluate("window.uploads")
        assert "image" in uploads[0]["keys"] and uploads[0]["size"] == query.stat().st_size
        assert "im_id" in uploads[1]["keys"] and "image" not in uploads[1]["keys"]

        # Search by an image URL typed into the widget, and one that is no image: the reason shows.
        page.fill("#sbi input[type=url]", f"{files}/s6.png")
        page.press("#sbi input[type=url]", "Enter")
        wait_results(page, "sbi", 3)
        assert names(page, "#sbi")[0] == "s6"
        page.fill("#sbi input[type=url]", f"{files}/missing.png")
        page.press("#sbi input[type=url]", "Enter")
        page.wait_for_selector("#sbi[data-magpie-state=error]")
        assert "im_url answered HTTP 404" in page.inner_text("#sbi .magpie-status.magpie-error")
        page.wait_for_selector("#sbi .magpie-query", state="hidden")  # no broken preview

        # Drag and drop a big photo: the widget sends it scaled down to 1024 px as a JPEG.
        drop(page, "#sbi .magpie-drop", big_photo(), "photo.png", "image/png")
        wait_results(page, "sbi", 4)
        assert names(page, "#sbi")[0] == "s5"
        shrunk = page.evaluate("window.uploads")[-1]
        assert shrunk["type"] == "image/jpeg" and shrunk["size"] < len(big_photo()) // 4
        drop(page, "#sbi .magpie-drop", b"just text", "notes.txt", "text/plain")
        assert page.inner_text("#sbi .magpie-status") == "Please choose an image file."

        # Paste an image link anywhere in the widget.
        page.evaluate("""url => { const dt = new DataTransfer(); dt.setData('text/plain', url);
            document.querySelector('#sbi .magpie-sbi').dispatchEvent(
                new ClipboardEvent('paste', {clipboardData: dt, bubbles: true})); }""", f"{files}/s7.png")
        wait_results(page, "sbi", 5)
        assert names(page, "#sbi")[0] == "s7"

        # Filter by a brand from the facets: every card is of that brand; back to page 1.
        options = page.eval_on_selector_all("#sbi select[data-field=brand] option", "os => os.map(o => o.value)")
        assert set(options) == {""} | {it["brand"] for it in ITEMS}
        page.select_option("#sbi select[data-field=brand]", "Nike")
        filtered = wait_results(page, "sbi", 6)
        nikes = sum(it["brand"] == "Nike" for it in ITEMS)
        assert filtered["total"] == nikes and filtered["page"] == 1
        assert {brand_of(n) for n in names(page, "#sbi")} == {"Nike"}
        assert nikes <= 4 and not page.is_visible("#sbi .magpie-pager")  # one page: no pager
        shot(page, "filter")

        # Keyboard: the upload button and the cards are reachable and labelled.
        assert page.get_attribute("#sbi .magpie-upload", "type") == "button"
        card = page.locator("#sbi .magpie-card a").nth(1)
        clicked = page.get_attribute("#sbi .magpie-card >> nth=1", "data-im-name")
        card.focus()
        page.keyboard.press("Enter")  # a product_click with the search's reqid and position 2
        page.wait_for_url("**/product.html?**")
        assert f"sku={clicked}" in page.url and f"magpie_reqid={filtered['reqid']}" in page.url

        # The product page: its carousel, and the merchant's own add_to_cart and transaction.
        page.wait_for_selector("#similar[data-magpie-state=ready]")
        related = names(page, "#similar")  # the page's fixed filter keeps the 1.00 swatches out
        assert related and clicked not in related and not any(n.startswith("swatch") for n in related)
        page.click("#buy")
        page.wait_for_function("document.getElementById('cart').textContent === 'OK 2'")
        shot(page, "product")

        # Narrow screens: the grid gets fewer columns.
        page.goto("/index.html")
        page.set_viewport_size({"width": 390, "height": 844})
        page.set_input_files("#sbi input[type=file]", str(query))
        wait_results(page, "sbi", 1)
        columns = page.eval_on_selector("#sbi .magpie-grid",
                                        "g => getComputedStyle(g).gridTemplateColumns.split(' ').length")
        assert 1 < columns <= 3
        shot(page, "mobile")
        page.goto("/done.html")  # pagehide: whatever is still queued goes by sendBeacon
        recorded = page.evaluate("JSON.parse(sessionStorage.getItem('recorded'))")
        uid, sid, cookie = page.evaluate("""[localStorage.getItem('magpie_uid'),
            JSON.parse(sessionStorage.getItem('magpie_sid')).id, document.cookie]""")
        assert len(uid) == len(sid) == 32 and f"magpie_uid={uid}" in cookie
        # The SDK alone, imported as an ES module across origins (CORS allows it).
        assert page.evaluate(f"import('{server.url}/widgets/v1/magpie-sdk.js').then(m => m.VERSION)") == "0.1.0"
        page.context.close()

    views = {(e["queryId"], e["pid"]) for e in recorded if e["kind"] == "view"}
    assert len(views) == sum(e["kind"] == "view" for e in recorded)  # once per card per search
    clicks = [e for e in recorded if e["kind"] == "click"]
    assert clicks == [{"kind": "click", "queryId": filtered["reqid"], "pid": clicked, "pos": 2}]
    body = report(server.url, shop, lambda b: b["totals"]["views"] >= len(views) and b["totals"]["transactions"])
    t = body["totals"]
    assert (t["views"], t["clicks"], t["add_to_carts"], t["transactions"]) == (len(views), 1, 1, 1)
    assert body["top_products"] == [{"pid": clicked, "clicks": 1, "avg_pos": 2.0}]
    assert body["revenue"] == [{"currency": "USD", "transactions": 1, "revenue": 42.5}]
    # Attribution: the click, the add to cart and the sale all count for the upload search.
    upload = report(server.url, shop, lambda b: True, solution="uploadsearch")["totals"]
    assert (upload["clicked_searches"], upload["carted_searches"], upload["converted_searches"]) == (1, 1, 1)
    # One shopper, one session: the widgets and the merchant's own calls share uid and sid.
    events = httpx.get(f"{server.url}/v1/analytics/events.csv", auth=(shop["access_key"], shop["secret_key"]))
    rows = list(csv.DictReader(io.StringIO(events.text)))
    assert len(rows) == len(views) + 3 and {(r["uid"], r["sid"]) for r in rows} == {(uid, sid)}


def test_a_catalog_value_never_becomes_a_script_link(chromium, server, shop):
    key, auth = shop["app_key"], (shop["access_key"], shop["secret_key"])
    target = httpx.get(f"{server.url}/recommendation",
                       params={"access_key": key, "im_name": "s2"}).json()["result"][0]["im_name"]
    trans = httpx.post(f"{server.url}/insert", auth=auth, data={
        "im_name[0]": target, "product_url[0]": "javascript:alert(document.domain)"}).json()["trans_id"]
    deadline = time.monotonic() + 30
    while httpx.get(f"{server.url}/insert/status/{trans}", auth=auth).json()["result"][0][
            "processed_percent"] < 100 and time.monotonic() < deadline:
        time.sleep(0.2)
    with merchant_site(server.url, key) as site:
        page = new_page(chromium, site)
        page.goto("/index.html")
        page.wait_for_selector("#similar[data-magpie-state=ready]")
        card = page.locator(f'#similar .magpie-card[data-im-name="{target}"]')
        assert card.locator("button").count() == 1 and card.locator("a").count() == 0
        others = page.eval_on_selector_all("#similar .magpie-card a", "as => as.map(a => a.href)")
        assert others and all(h.startswith(f"{site}/product.html?sku=") for h in others)
        page.context.close()
