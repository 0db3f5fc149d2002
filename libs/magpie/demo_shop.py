"""The `magpie demo` storefront: a small web server playing the merchant's site. It serves the
catalog's images (to Magpie's fetcher and to shoppers) and the storefront pages rendered from
templates/storefront.html, which embed both widgets by the widget contract."""
from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, unquote, urlsplit

if TYPE_CHECKING:
    from magpie.demo import Product

TEMPLATE = Path(__file__).parent / "templates" / "storefront.html"
WIDGET_FIELDS = "title,price,product_url,image_url"


@dataclass
class Storefront:
    """What the shop's pages show: Magpie's URL, the search-only key, the products."""

    products: list[Product]
    images: Path
    magpie_url: str = ""
    app_key: str = ""

    def by_name(self) -> dict[str, Product]:
        """Products by im_name."""
        return {p.im_name: p for p in self.products}


def render(shop: Storefront, product: Product | None = None, category: str = "") -> str:
    """The storefront's grid page, or a product page, with the widgets embedded."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATE.parent), autoescape=select_autoescape())
    categories = sorted({p.category for p in shop.products})
    shown = [p for p in shop.products if not category or p.category == category]
    return env.get_template(TEMPLATE.name).render(
        host=shop.magpie_url, app_key=shop.app_key, product=product, products=shown,
        categories=categories, category=category, fields=WIDGET_FIELDS, quote=quote)


class _ShopHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ShopServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet demo
        pass

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache" if ctype.startswith("text/html") else "max-age=3600")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        shop, parts = self.server.shop, urlsplit(self.path)
        path = unquote(parts.path)
        if path.startswith("/images/"):
            file = (shop.images / path[len("/images/"):]).resolve()
            if file.parent != shop.images.resolve() or not file.is_file():
                return self._send(404, b"no such image", "text/plain")
            return self._send(200, file.read_bytes(), "image/png")
        if not shop.app_key:
            return self._send(503, b"The demo catalog is still loading; reload in a moment.", "text/plain")
        if path in ("/", "/index.html"):
            category = parse_qs(parts.query).get("category", [""])[0]
            return self._send(200, render(shop, category=category).encode(), "text/html; charset=utf-8")
        if path.startswith("/product/"):
            product = shop.by_name().get(path[len("/product/"):])
            if product is None:
                return self._send(404, f"No product {html.escape(path)}".encode(), "text/plain")
            return self._send(200, render(shop, product).encode(), "text/html; charset=utf-8")
        return self._send(404, b"not found", "text/plain")

    do_HEAD = do_GET  # noqa: N815


class _ShopServer(ThreadingHTTPServer):
    daemon_threads = True
    shop: Storefront


@contextmanager
def serve_shop(shop: Storefront, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run the merchant's site (images and storefront pages) in a thread; yields its URL."""
    server = _ShopServer((host, port), _ShopHandler)
    server.shop = shop
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="demo-shop", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
