"""`magpie demo`: a standalone Magpie with a sample catalog and a storefront that embeds both
web widgets, in one command.

The catalog is the twitter emoji set (`npm pack emoji-datasource-twitter`, cached in
~/.cache/magpie/emoji, shared with bench/quality.py) with each emoji's category and
subcategory as searchable metadata, or a generated set of coloured shapes when npm cannot
fetch it. It is loaded through the Python SDK (sdk/python). A small local web server plays the
merchant's site: it serves the images to Magpie's fetcher and the storefront pages.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import typer

from magpie.demo_shop import Storefront, serve_shop

if TYPE_CHECKING:
    from magpie_sdk import App, BulkResult, Magpie

EMOJI_PACKAGE = "emoji-datasource-twitter"  # only this vendor: others are held out
EMOJI_CACHE = Path.home() / ".cache" / "magpie" / "emoji"
APP_NAME = "Magpie demo shop"
DEMO_EMAIL = "demo@localhost"
SCHEMA = [{"name": "title", "type": "string", "searchable": False},
          {"name": "category", "type": "string", "searchable": True},
          {"name": "subcategory", "type": "string", "searchable": True},
          {"name": "price", "type": "float", "searchable": True},
          {"name": "keywords", "type": "text", "searchable": True},
          {"name": "product_url", "type": "string", "searchable": False},
          {"name": "image_url", "type": "string", "searchable": False}]


@dataclass(frozen=True)
class Product:
    """One catalog item; `file` is the image's name in the images folder."""

    im_name: str
    title: str
    category: str
    subcategory: str
    price: float
    keywords: str
    file: str

    def row(self, shop_url: str) -> dict[str, Any]:
        """The Data API row, with URLs on the shop's server."""
        image = f"{shop_url}/images/{quote(self.file)}"
        return {"im_name": self.im_name, "im_url": image, "title": self.title,
                "category": self.category, "subcategory": self.subcategory, "price": self.price,
                "keywords": self.keywords, "product_url": f"{shop_url}/product/{quote(self.im_name)}",
                "image_url": image}


def _price(key: str) -> float:
    # A stable made-up price, so re-runs update nothing.
    return round(1.99 + zlib.crc32(key.encode()) % 4000 / 100, 2)


# --- catalogs ----------------------------------------------------------------------------
def fetch_twitter_emoji(cache: Path = EMOJI_CACHE) -> Path | None:
    """The extracted twitter emoji package (emoji.json, img/twitter/64/*.png), fetched with
    `npm pack` on first use; None when npm is missing or the registry unreachable."""
    root = cache / EMOJI_PACKAGE
    if (root / "emoji.json").exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    tgz = sorted(cache.glob(f"{EMOJI_PACKAGE}-*.tgz"))
    if not tgz:
        try:
            subprocess.run(["npm", "pack", EMOJI_PACKAGE, "--silent"], cwd=cache, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        except (OSError, subprocess.SubprocessError):
            return None
        tgz = sorted(cache.glob(f"{EMOJI_PACKAGE}-*.tgz"))
        if not tgz:
            return None
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{EMOJI_PACKAGE}."))
    wanted = re.compile(r"^package/(emoji\.json|img/twitter/64/[^/]+\.png)$")
    with tarfile.open(tgz[-1]) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and wanted.match(m.name)]
        tar.extractall(tmp, members=members, filter="data")
    (tmp / "package").rename(root)
    tmp.rmdir()
    return root


def emoji_catalog(root: Path, limit: int | None = None) -> tuple[list[Product], Path]:
    """Products from the twitter emoji set (every category represented when limited)."""
    meta = sorted(json.loads((root / "emoji.json").read_text()), key=lambda e: e["sort_order"])
    images = root / "img" / "twitter" / "64"
    items = [e for e in meta if e.get("has_img_twitter") and (images / e["image"]).exists()]
    if limit and limit < len(items):
        # The list is ordered by category: an even stride keeps every category in the sample.
        items = [items[i * len(items) // limit] for i in range(limit)]
    products = [Product(im_name=e["unified"].lower(), title=(e.get("name") or e["short_name"]).capitalize(),
                        category=e["category"], subcategory=e.get("subcategory") or "",
                        price=_price(e["unified"]),
                        keywords=" ".join([*(e.get("short_names") or []), (e.get("name") or "").lower()]),
                        file=e["image"]) for e in items]
    return products, images


SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {"red": (214, 40, 40), "orange": (247, 127, 0), "yellow": (240, 200, 40),
           "green": (60, 160, 70), "blue": (40, 90, 200), "purple": (120, 60, 170),
           "pink": (230, 110, 170), "black": (30, 30, 30)}


def generated_catalog(folder: Path, limit: int | None = None) -> tuple[list[Product], Path]:
    """Coloured shapes on white (shape = category, colour = subcategory), drawn into `folder`."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    products = []
    for i in range(limit or 200):
        shape, (colour, rgb) = SHAPES[i % 4], list(COLOURS.items())[(i // 4) % len(COLOURS)]
        size = 60 + (i * 37) % 60
        im = Image.new("RGB", (160, 160), "white")
        d, c = ImageDraw.Draw(im), 80
        box = (c - size // 2, c - size // 2, c + size // 2, c + size // 2)
        if shape == "circle":
            d.ellipse(box, fill=rgb)
        elif shape == "square":
            d.rectangle(box, fill=rgb)
        elif shape == "triangle":
            d.polygon([(c, box[1]), (box[2], box[3]), (box[0], box[3])], fill=rgb)
        else:
            d.polygon([(c, box[1]), (box[2], c), (c, box[3]), (box[0], c)], fill=rgb)
        name = f"{colour}-{shape}-{i}"
        im.save(folder / f"{name}.png")
        products.append(Product(name, f"{colour.capitalize()} {shape} no. {i}", shape.capitalize() + "s",
                                colour, _price(name), f"{colour} {shape}", f"{name}.png"))
    return products, folder


def prepare_catalog(work_dir: Path, limit: int | None = None, source: str = "auto",
                    cache: Path = EMOJI_CACHE) -> tuple[list[Product], Path, str]:
    """(products, their images folder, "twitter" or "generated")."""
    if source in ("auto", "twitter"):
        root = fetch_twitter_emoji(cache)
        if root is not None:
            products, images = emoji_catalog(root, limit)
            return products, images, "twitter"
        if source == "twitter":
            raise RuntimeError(f"could not fetch {EMOJI_PACKAGE} with npm")
    products, images = generated_catalog(work_dir / "generated", limit)
    return products, images, "generated"


# --- loading, through the Python SDK -------------------------------------------------------
def create_demo_app(admin: Magpie) -> App:
    """A new application with the demo schema; its keys (the app key is search-only)."""
    app = admin.admin.create_app(APP_NAME, "general")
    admin.admin.set_schema(app.app_id, SCHEMA)
    return app


def load_catalog(client: Magpie, products: list[Product], shop_url: str, *, progress: bool = True,
                 timeout: float = 1800) -> BulkResult:
    """Insert the products in chunks of 100 and wait until they are indexed."""
    return client.bulk_insert((p.row(shop_url) for p in products), total=len(products),
                              progress=progress, timeout=timeout)


# --- the command -----------------------------------------------------------------------------
def _start_magpie(data_dir: Path, host: str, port: int, password: str) -> subprocess.Popen:
    env = {**os.environ, "MAGPIE_DATA_DIR": str(data_dir), "MAGPIE_HOST": host, "MAGPIE_PORT": str(port),
           "MAGPIE_ADMIN_EMAIL": DEMO_EMAIL, "MAGPIE_ADMIN_PASSWORD": password,
           # The demo's images come from its own server on this machine; only this server
           # (not the user's settings) may fetch from private addresses.
           "MAGPIE_ALLOW_PRIVATE_IMAGE_URLS": "true", "MAGPIE_SFTP_ENABLED": "false"}
    log = (data_dir / "server.log").open("a")
    return subprocess.Popen([sys.executable, "-m", "magpie.cli.main", "serve"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"magpie serve exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"magpie serve did not answer on {url} within {timeout:.0f}s; see {log}")


def _state(data_dir: Path) -> dict[str, Any]:
    path = data_dir / "demo.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    if "password" not in state:
        state["password"] = secrets.token_urlsafe(12)
        _save(data_dir, state)
    return state


def _save(data_dir: Path, state: dict[str, Any]) -> None:
    path = data_dir / "demo.json"
    path.write_text(json.dumps(state, indent=2))
    path.chmod(0o600)  # it holds the demo application's secret key


def _demo_app(admin: Magpie, state: dict[str, Any], data_dir: Path) -> App:
    """The application of an earlier run of this data folder, or a new one."""
    from magpie_sdk import App, NotFoundError

    saved = state.get("app")
    if saved:
        try:
            admin.admin.get_app(saved["app_id"])
            return App(**{k: saved[k] for k in ("app_id", "name", "image_type", "schema_version",
                                                "access_key", "secret_key", "app_key")}, created_at=None)
        except NotFoundError:
            pass
    app = create_demo_app(admin)
    state["app"] = {k: v for k, v in asdict(app).items() if k != "created_at"}
    _save(data_dir, state)
    return app


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class DemoError(Exception):
    """Why the demo cannot run, said plainly."""


def _wait_for_stop(proc: subprocess.Popen) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set() and proc.poll() is None:
        stop.wait(0.5)


def run_demo(data_dir: Path, limit: int | None, source: str, host: str, port: int, shop_port: int) -> None:
    """Everything `magpie demo` does, until Ctrl-C or SIGTERM."""
    from magpie_sdk import AuthenticationError, Magpie, MagpieError

    for name, p in (("--port", port), ("--shop-port", shop_port)):
        if not _port_free(host, p):
            raise DemoError(f"{host}:{p} is in use; choose another with {name}.")
    data_dir.mkdir(parents=True, exist_ok=True)
    state = _state(data_dir)
    typer.echo("Preparing the catalog ...", err=True)
    products, images, used = prepare_catalog(data_dir, limit, source)
    typer.echo(f"{len(products)} products ({used})", err=True)
    shop = Storefront(products, images)
    magpie_url, log = f"http://{host}:{port}", data_dir / "server.log"
    proc = _start_magpie(data_dir, host, port, state["password"])
    try:
        with serve_shop(shop, host, shop_port) as shop_url:
            typer.echo(f"Starting Magpie on {magpie_url} (log: {log}) ...", err=True)
            try:
                _wait_healthy(magpie_url, proc, log)
            except RuntimeError as exc:
                raise DemoError(str(exc)) from None
            try:
                with Magpie(magpie_url) as admin:
                    admin.admin.sign_in(DEMO_EMAIL, state["password"])
                    app = _demo_app(admin, state, data_dir)
                    with admin.admin.client_for(app) as client:
                        result = load_catalog(client, products, shop_url)
            except AuthenticationError:
                raise DemoError(f"{data_dir} holds a Magpie whose owner is not the demo's (demo.json "
                                "lost?); remove the folder or pick another --data-dir.") from None
            except MagpieError as exc:
                raise DemoError(f"loading the catalog failed: {exc}") from None
            typer.echo(f"indexed {result.success_count}, failed {result.fail_count}", err=True)
            for e in result.errors[:10]:
                typer.echo(f"  {e.im_name}: {e.code} {e.message}", err=True)
            shop.magpie_url, shop.app_key = magpie_url, app.app_key or ""
            typer.echo(f"\nStorefront:  {shop_url}/\nDashboard:   {magpie_url}/dashboard  "
                       f"({DEMO_EMAIL} / {state['password']})\nApp key:     {app.app_key} (search-only)\n"
                       "Ctrl-C stops both servers.")
            _wait_for_stop(proc)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def demo(
    limit: int = typer.Option(None, "--limit", help="Load only N products (default: the whole set, ~1,900 emoji)."),
    source: str = typer.Option("auto", "--source", help="twitter (npm emoji set), generated, or auto "
                               "(twitter, else generated)."),
    data_dir: Path = typer.Option(Path("data/demo"), "--data-dir", help="Where the demo's Magpie keeps its data."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address both servers listen on."),
    port: int = typer.Option(8080, "--port", help="Magpie's port."),
    shop_port: int = typer.Option(8090, "--shop-port", help="The storefront's port."),
) -> None:
    """Start Magpie with a sample catalog and serve a storefront that embeds both widgets."""
    if source not in ("auto", "twitter", "generated"):
        raise typer.BadParameter("use twitter, generated or auto", param_hint="--source")
    if limit is not None and limit < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--limit")
    try:
        run_demo(data_dir.resolve(), limit, source, host, port, shop_port)
    except DemoError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)
