"""`magpie demo`: its catalog loads through the Python SDK into a live server (40 twitter
emoji, or generated shapes where npm cannot fetch them), the storefront serves its grid and
product pages with both widgets embedded, and searching works with the search-only key."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from magpie.demo import SCHEMA, create_demo_app, load_catalog, prepare_catalog
from magpie.demo_shop import Storefront, serve_shop
from magpie_sdk import Magpie
from tests.fixtures.browser import artifacts_dir, new_page
from tests.fixtures.server import ADMIN_EMAIL, ADMIN_PASSWORD, free_port

pytestmark = pytest.mark.e2e
N = 40


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    products, images, source = prepare_catalog(tmp_path_factory.mktemp("demo"), N)
    assert source in ("twitter", "generated") and len(products) == N
    return products, images, source


@pytest.fixture(scope="module")
def shop(server, catalog) -> Iterator[tuple[Storefront, str, dict]]:
    products, images, _ = catalog
    front = Storefront(products, images)
    with serve_shop(front) as shop_url, Magpie(server.url) as admin:
        admin.admin.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        app = create_demo_app(admin)
        with admin.admin.client_for(app) as client:
            result = load_catalog(client, products, shop_url, progress=True, timeout=300)
        assert result.fail_count == 0 and result.success_count == N, result.errors
        front.magpie_url, front.app_key = server.url, app.app_key
        yield front, shop_url, {"app": app, "result": result}


def test_catalog_has_categories_as_searchable_metadata(catalog):
    products, images, source = catalog
    assert len({p.im_name for p in products}) == N
    assert len({p.category for p in products}) >= (8 if source == "twitter" else 4)
    assert all((images / p.file).is_file() for p in products)
    assert {f["name"] for f in SCHEMA if f["searchable"]} >= {"category", "subcategory"}


def test_storefront_pages_embed_both_widgets(server, shop):
    front, url, ctx = shop
    grid = httpx.get(f"{url}/")
    assert grid.status_code == 200 and grid.headers["content-type"].startswith("text/html")
    page = grid.text
    assert f'<script src="{server.url}/widgets/v1/magpie-widgets.js" defer></script>' in page
    assert (f'data-magpie-widget="search-by-image" data-app-key="{ctx["app"].app_key}"\n'
            f'       data-host="{server.url}"') in page
    assert all(f'href="/product/{quote(p.im_name)}"' in page for p in front.products)
    first = front.products[0]
    product = httpx.get(f"{url}/product/{quote(first.im_name)}").text
    assert 'data-magpie-widget="similar"' in product and f'data-im-name="{first.im_name}"' in product
    assert 'data-limit="12"' in product and 'data-fl="title,price,product_url,image_url"' in product
    filtered = httpx.get(f"{url}/", params={"category": first.category}).text
    assert filtered.count('class="card"') == sum(p.category == first.category for p in front.products)
    image = httpx.get(f"{url}/images/{quote(first.file)}")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert httpx.get(f"{url}/product/nope").status_code == 404
    assert httpx.get(f"{url}/images/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_search_with_the_search_only_key(server, shop):
    front, url, ctx = shop
    with Magpie(server.url, app_key=ctx["app"].app_key) as browser:
        assert browser.app_info().scope == "search" and browser.app_info().item_count == N
        first = front.products[0]
        same = browser.search(first.im_name, fq={"category": first.category},
                              fl=["title", "price", "product_url", "image_url"], limit=5)
        assert same.total == sum(p.category == first.category for p in front.products) - 1
        for hit in same:
            assert hit.value_map["product_url"].startswith(f"{url}/product/")
            assert hit.value_map["image_url"].startswith(f"{url}/images/")
        image = (front.images / front.products[5].file).read_bytes()
        assert browser.uploadsearch(image, limit=3).im_names[0] == front.products[5].im_name
        assert browser.recommendation(front.products[9].im_name, limit=6).hits


def test_demo_command_help():
    done = subprocess.run([sys.executable, "-m", "magpie.cli.main", "demo", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--limit" in done.stdout and "storefront" in done.stdout


def _run_demo(data_dir, port: int, shop_port: int, model_cache) -> tuple[str, str]:
    """Run `magpie demo` until it prints its URLs, then stop it with SIGTERM; (stdout, stderr)."""
    env = {**os.environ, "MAGPIE_MODEL_CACHE_DIR": str(model_cache)}
    proc = subprocess.Popen([sys.executable, "-m", "magpie.cli.main", "demo", "--limit", "8",
                             "--source", "generated", "--data-dir", str(data_dir), "--port", str(port),
                             "--shop-port", str(shop_port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out = ""
    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C" not in out and time.monotonic() < deadline and proc.poll() is None:
            out += proc.stdout.readline()
        assert "Ctrl-C" in out, (out, proc.poll())
        page = httpx.get(f"http://127.0.0.1:{shop_port}/")
        assert page.status_code == 200 and page.text.count('class="card"') == 8
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    finally:
        proc.terminate()
        rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    with pytest.raises(httpx.TransportError):  # Magpie stopped with the demo
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    return out + rest, err


def test_demo_command_end_to_end_and_again(tmp_path, model_cache):
    port, shop_port = free_port(), free_port()
    out, err = _run_demo(tmp_path / "demo", port, shop_port, model_cache)
    assert "indexed 8, failed 0" in err and "indexing" in err  # the SDK's progress bar
    assert f"Storefront:  http://127.0.0.1:{shop_port}/" in out
    key = out.split("App key:")[1].split()[0]
    # A second run reuses the application and its keys.
    again, err2 = _run_demo(tmp_path / "demo", port, shop_port, model_cache)
    assert again.split("App key:")[1].split()[0] == key and "indexed 8, failed 0" in err2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "magpie.cli.main", "demo", "--data-dir",
                               str(tmp_path / "other"), "--port", str(busy)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"127.0.0.1:{busy} is in use" in done.stderr


def test_widgets_render_results_in_the_storefront(server, shop, chromium):
    front, url, ctx = shop
    if httpx.get(f"{server.url}/widgets/v1/magpie-widgets.js").status_code != 200:
        pytest.skip("the gateway does not serve /widgets/v1/magpie-widgets.js yet")
    page = new_page(chromium, url)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    first = front.products[0]
    page.goto(f"/product/{quote(first.im_name)}")
    # The similar widget shows cards linking to other products of the shop.
    links = page.locator(f'#similar a[href^="{url}/product/"]')
    links.first.wait_for(state="visible", timeout=20_000)
    hrefs = [links.nth(i).get_attribute("href").split("?")[0] for i in range(links.count())]
    assert 1 <= len(hrefs) <= 12 and f"{url}/product/{quote(first.im_name)}" not in hrefs
    page.screenshot(path=str(artifacts_dir() / "demo-product.png"), full_page=True)

    # Search by image on the grid page finds the product itself first...
    page.goto("/")
    widget = page.locator("#search-by-image")
    wanted = front.products[5]
    widget.locator("input[type=file]").first.set_input_files(str(front.images / wanted.file))
    found = widget.locator(f'a[href^="{url}/product/"]')
    found.first.wait_for(state="visible", timeout=20_000)
    assert found.first.get_attribute("href").split("?")[0] == f"{url}/product/{quote(wanted.im_name)}"
    page.screenshot(path=str(artifacts_dir() / "demo-search.png"), full_page=True)
    # ...and a click carries the search's reqid to the product page, where the cart names it.
    found.first.click()
    page.wait_for_url(f"{url}/product/{quote(wanted.im_name)}?*")
    page.click("#add-to-cart")
    assert "attributed to search" in page.inner_text("#cart-note")
    assert not errors, errors
    page.context.close()
    app = ctx["app"]
    with Magpie(server.url, access_key=app.access_key, secret_key=app.secret_key) as client:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            totals = client.report()["totals"]
            if totals["clicks"] >= 1 and totals["carted_searches"] >= 1:
                break
            time.sleep(0.3)
    assert totals["clicks"] >= 1 and totals["carted_searches"] >= 1, totals
