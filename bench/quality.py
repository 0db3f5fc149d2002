"""Retrieval quality of the production embedder + vector index on emoji drawings (issue 10).

Usage: python bench/quality.py [--limit N] [--variant V ...] [--cache-dir DIR] [--threads N]

Data: the npm packages emoji-datasource-twitter and emoji-datasource-facebook, fetched at run
time with `npm pack` into the cache dir (default ~/.cache/magpie/emoji) and extracted there
(emoji.json and the 64 px PNGs only). Ground truth: the same `unified` code. Only these two
vendors are used: the other vendors' sets are held out for evaluation and never touched.

Everything runs through the production code: images are decoded like ingest
(`decode_and_normalise`: RGB, transparent pixels on white), embedded by the model the
`ModelRegistry` serves, stored in and searched through `EdgeIndex` with `magpie.common.filters`.

Sets (catalog / queries):
- tw->fb:   facebook catalog, twitter drawings as queries;
- fb->tw:   twitter catalog, facebook drawings as queries;
- photo:    facebook catalog, each catalog image distorted like a phone photo (crop 60-90 % of
            the area, rotation +-15 deg, rescale, coloured or cluttered background, JPEG q30-70;
            fixed seed);
- tw->fb|cat: tw->fb restricted by the filter AnyOf("category", <query's category>).
Prints recall@1, recall@10, mAP@10 (one relevant item: 1/rank within the top 10) per set, and
the embedding rate (images/s, preprocessing + model, decode excluded) per variant.

Variants (`--variant`, repeatable; steps joined with '+', e.g. `base+lw+qe`), all built from
production parts (`magpie.embedding.models`, `.projection`, `.augment`):
- base   the production embedder as the registry serves it (`--model` picks another);
- cnn    the same network without the appearance descriptor (the previous default);
- avg    the previous default graph instead: head map averaged, no border trimming;
- flip   average the vectors of the image and its mirror image (2 model runs);
- white  PCA-whitening fitted on the CATALOG vectors only (`fit_pca_whitening`), applied to both;
- lw     learned whitening (`fit_learned_whitening`): fitted on the catalog and 4 synthetic
         views of each catalog image (`augment.views`, seeded), never on queries;
- qe     alpha query expansion: the query plus its top 3 hits weighted by score^3, searched
         again (a second index search per query);
- mv     queries as upload search sends them (`magpie.search.views`): a picture without a
         uniform border is searched whole and as 9 crops, each item at its best view
         (`nearest`); the views are embedded untimed.
The views' vectors are cached in --vector-cache between runs (they are not timed).
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from magpie.common.events.control import FieldSpec
from magpie.common.filters import AnyOf
from magpie.common.ports.index import IndexPoint
from magpie.embedding.augment import views
from magpie.embedding.models.efficientnet import IMAGE_SIZES, OnnxImageEmbedder, load_efficientnet
from magpie.embedding.projection import fit_learned_whitening, fit_pca_whitening
from magpie.embedding.registry import ModelRegistry
from magpie.image_fetch.images import decode_and_normalise
from magpie.search.index.edge import EdgeIndex
from magpie.search.query import in_stable_order
from magpie.search.views import nearest, query_views

VENDORS = ("twitter", "facebook")
PACKAGE = "emoji-datasource-{}"
DEFAULT_CACHE = Path.home() / ".cache" / "magpie" / "emoji"
DEFAULT_MODELS = Path.home() / ".cache" / "magpie" / "models"
DEFAULT_VECTORS = Path.home() / ".cache" / "magpie" / "quality"
SEED = 1234
K = 10


# ---------------------------------------------------------------- data

def fetch(cache: Path) -> dict[str, Path]:
    """The extracted package folder of each vendor, `npm pack`ed and extracted on first use."""
    cache.mkdir(parents=True, exist_ok=True)
    roots = {}
    for vendor in VENDORS:
        name = PACKAGE.format(vendor)
        root = cache / name
        if not (root / "emoji.json").exists():
            tgz = sorted(cache.glob(f"{name}-*.tgz"))
            if not tgz:
                print(f"npm pack {name} ...", file=sys.stderr)
                subprocess.run(["npm", "pack", name, "--silent"], cwd=cache, check=True,
                               stdout=subprocess.DEVNULL)
                tgz = sorted(cache.glob(f"{name}-*.tgz"))
            tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{name}."))
            wanted = re.compile(rf"^package/(emoji\.json|img/{vendor}/64/[^/]+\.png)$")
            with tarfile.open(tgz[-1]) as tar:
                members = [m for m in tar.getmembers() if m.isfile() and wanted.match(m.name)]
                tar.extractall(tmp, members=members, filter="data")
            (tmp / "package").rename(root)
            tmp.rmdir()
        roots[vendor] = root
    return roots


@dataclass
class Item:
    code: str  # the unified code: the ground truth
    category: str
    subcategory: str
    files: dict[str, Path]


def load_items(roots: dict[str, Path], limit: int | None) -> list[Item]:
    """Emoji (no skin-tone variants) drawn by both vendors; a seeded random subset if limited."""
    meta = json.loads((roots["twitter"] / "emoji.json").read_text())
    items = []
    for e in sorted(meta, key=lambda e: e["sort_order"]):
        if not all(e.get(f"has_img_{v}") for v in VENDORS):
            continue
        files = {v: roots[v] / "img" / v / "64" / e["image"] for v in VENDORS}
        if all(f.exists() for f in files.values()):
            items.append(Item(e["unified"], e["category"], e["subcategory"], files))
    if limit and limit < len(items):
        pick = np.random.default_rng(SEED).choice(len(items), limit, replace=False)
        items = [items[i] for i in sorted(pick)]
    return items


def normalise(data: bytes) -> Image.Image:
    """The image as ingest hands it to the embedder: the stored copy's pixels (RGB, alpha
    composited on white; the emoji PNGs are stored as they came, the photo-like JPEGs too)."""
    return decode_and_normalise(data, min_side=16, warn_side=0).stored_pixels()


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    kind = rng.integers(3)
    if kind == 0:  # flat colour
        return Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(0, 256, 3)))
    if kind == 1:  # gradient
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        ramp = np.linspace(0, 1, w)[None, :, None]
        arr = (c0 * (1 - ramp) + c1 * ramp).repeat(h, 0)
        return Image.fromarray(arr.astype(np.uint8))
    # clutter: coloured noise, random shapes and lines, slightly blurred
    base = rng.integers(0, 256, (max(1, h // 16), max(1, w // 16), 3)).astype(np.uint8)
    im = Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(8, 25))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(5, w // 2 + 6)), y0 + int(rng.integers(5, h // 2 + 6))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = rng.integers(3)
        if shape == 0:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        elif shape == 1:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        else:
            draw.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(1, 6)))
    return im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.5))))


def photo_like(png: Path, seed: int) -> bytes:
    """A JPEG of the drawing as a phone might photograph it: see the module docstring."""
    rng = np.random.default_rng(seed)
    im = Image.open(png).convert("RGBA")
    w, h = im.size
    area, aspect = rng.uniform(0.6, 0.9), np.exp(rng.uniform(np.log(0.8), np.log(1.25)))
    cw = int(round(min(w, w * np.sqrt(area * aspect))))
    ch = int(round(min(h, h * np.sqrt(area / aspect))))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    im = im.crop((x, y, x + cw, y + ch))
    im = im.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BICUBIC, expand=True)
    side = int(rng.integers(72, 321))  # rescaled: object from 72 to 320 px
    scale = side / max(im.size)
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                   Image.Resampling.BICUBIC)
    f = rng.uniform(1.15, 1.8)
    bw, bh = int(im.width * f * rng.uniform(0.9, 1.2)), int(im.height * f)
    bg = _background(rng, bw, bh)
    bg.paste(im, (int(rng.integers(0, bw - im.width + 1)), int(rng.integers(0, bh - im.height + 1))),
             im)
    out = io.BytesIO()
    bg.save(out, "JPEG", quality=int(rng.integers(30, 71)))
    return out.getvalue()


# ---------------------------------------------------------------- variants

STEPS = re.compile(r"base|cnn|avg|flip|white|lw|qe|mv")
VIEWS = 4  # synthetic views per catalog image for the learned whitening
QE_K, QE_ALPHA = 3, 3.0  # alpha query expansion: top 3, weighted by similarity cubed
_MEMO: dict[str, tuple[np.ndarray, float]] = {}  # vectors and their embedding time, per run


class Variant:
    """An embedding pipeline built from production parts: the served embedder (`base`) or the
    previous default graph (`avg`), optionally mirrored (`flip`), plus a projection fitted on
    each catalog (`white`, `lw`) and alpha query expansion at search time (`qe`)."""

    def __init__(self, spec: str, embedder: OnnxImageEmbedder, model_cache: Path,
                 threads: int | None, vector_cache: Path | None, fit_sample: int | None = None,
                 ) -> None:
        self.spec = spec
        self.fit_sample = fit_sample
        steps = spec.split("+")
        bad = [s for s in steps if not STEPS.fullmatch(s)]
        if bad:
            raise SystemExit(f"unknown variant step(s) {bad} in {spec!r}")
        self.flip = "flip" in steps
        self.projection = "lw" if "lw" in steps else "white" if "white" in steps else None
        self.qe = "qe" in steps
        self.mv = "mv" in steps
        if "avg" in steps:
            self.embedder = load_efficientnet(model_cache, embedder.name, threads=threads,
                                              pooling="avg", trim=False, appearance=False)
        elif "cnn" in steps:
            self.embedder = load_efficientnet(model_cache, embedder.name, threads=threads,
                                              appearance=False)
        else:
            self.embedder = embedder
        self.vector_cache = vector_cache
        self.seconds = 0.0
        self.count = 0

    def _embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        vecs = self.embedder.embed(images)
        if self.flip:
            mirrored = self.embedder.embed([im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                                            for im in images])
            vecs = l2(vecs + mirrored)
        return vecs

    def embed(self, name: str, images: Sequence[Image.Image], timed: bool = True) -> np.ndarray:
        """The vectors of the image set `name`: embedded once per run and timed (the rate
        counts preprocessing + model); untimed sets (views) also come from the disk cache."""
        key = f"{self.embedder.name}-{self.embedder.version}-{self.flip:d}-{name}-{len(images)}"
        if key in _MEMO:
            vecs, seconds = _MEMO[key]
        else:
            path = self.vector_cache / f"{key}.npy" if self.vector_cache else None
            if path is not None and path.exists() and not timed:
                vecs, seconds = np.load(path), 0.0
            else:
                started = time.perf_counter()
                vecs = self._embed(images)
                seconds = time.perf_counter() - started
                if path is not None and not timed:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    np.save(path, vecs)
            _MEMO[key] = vecs, seconds
        if timed:
            self.seconds += seconds
            self.count += len(images)
        return vecs

    def query_vectors(self, name: str, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """Per query, its views' vectors (views x d): upload search's views with `mv`, else
        the one vector of `embed`."""
        whole = self.embed(name, images)
        if not self.mv:
            return [v[None] for v in whole]
        shown = [query_views(im) for im in images]
        extra = [view for per_query in shown for view in per_query[1:]]
        crops = self.embed(f"{name}-mv", extra, timed=False) if extra else whole[:0]
        out, at = [], 0
        for v, per_query in zip(whole, shown):
            out.append(np.vstack([v[None], crops[at:at + len(per_query) - 1]]))
            at += len(per_query) - 1
        return out

    def fit(self, vendor: str, catalog_vecs: np.ndarray, catalog: list[Image.Image],
            ) -> Callable[[np.ndarray], np.ndarray]:
        """The catalog's projection (identity without `white`/`lw`); catalog data only."""
        if self.projection == "white":
            return fit_pca_whitening(catalog_vecs).apply
        if self.projection == "lw":
            name = f"{vendor}-views{VIEWS}"
            if self.fit_sample and self.fit_sample < len(catalog):
                # As an application fitted when it was small: a seeded part of the catalog.
                rows = np.sort(np.random.default_rng(SEED).choice(
                    len(catalog), self.fit_sample, replace=False))
                catalog, catalog_vecs = [catalog[i] for i in rows], catalog_vecs[rows]
                name += f"-fit{self.fit_sample}"
            seen = views(catalog, VIEWS, seed=SEED)
            view_vecs = self.embed(name, seen, timed=False)
            return fit_learned_whitening(catalog_vecs, view_vecs).apply
        return lambda x: x


def l2(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length."""
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


# ---------------------------------------------------------------- evaluation

FIELDS = [FieldSpec(name="category", type="string", searchable=True),
          FieldSpec(name="subcategory", type="string", searchable=True)]


async def build_index(index: EdgeIndex, app: str, items: list[Item], vecs: np.ndarray) -> None:
    await index.ensure_collection(app, vecs.shape[1], FIELDS)
    await index.upsert(app, [IndexPoint(it.code, v.tolist(),
                                        {"category": it.category, "subcategory": it.subcategory})
                             for it, v in zip(items, vecs)])


async def evaluate(index: EdgeIndex, app: str, items: list[Item], queries: list[np.ndarray],
                   filtered: bool = False, expand: np.ndarray | None = None,
                   ) -> dict[str, float]:
    """Recall@1, recall@10 and mAP@10 of `queries` (query i, its views' vectors, looks for
    item i); `expand`, the catalog's vectors, turns on alpha query expansion (a second search
    per query, from the whole picture's vector)."""
    r1 = r10 = ap = 0.0
    row = {it.code: i for i, it in enumerate(items)}
    for it, vectors in zip(items, queries):
        flt = (AnyOf("category", (it.category,)),) if filtered else ()
        hits = in_stable_order(await nearest(index, app, [v.tolist() for v in vectors], limit=K,
                                             filter=flt))[:K]
        q = vectors[0]
        if expand is not None and hits:
            top = hits[:QE_K]
            weights = np.array([max(h.score, 0.0) ** QE_ALPHA for h in top], dtype=np.float32)
            q = q + weights @ expand[[row[h.im_name] for h in top]]
            q = q / max(float(np.linalg.norm(q)), 1e-12)
            hits = await index.search(app, q.tolist(), limit=K, filter=flt)
        names = [h.im_name for h in hits]
        if it.code in names:
            rank = names.index(it.code) + 1
            r1 += rank == 1
            r10 += 1
            ap += 1 / rank
    n = len(items)
    return {"R@1": r1 / n, "R@10": r10 / n, "mAP@10": ap / n}


def run_variant(variant: Variant, items: list[Item], images: dict[str, list[Image.Image]],
                ) -> dict[str, dict[str, float]]:
    """The scores of one variant on every set, through the production index."""
    vec = {name: variant.embed(name, ims) for name, ims in images.items()}
    # A projection, when asked for, is fitted on each catalog alone; queries are only projected.
    p_fb = variant.fit("facebook", vec["facebook"], images["facebook"])
    p_tw = variant.fit("twitter", vec["twitter"], images["twitter"])
    fb, tw = p_fb(vec["facebook"]), p_tw(vec["twitter"])
    qe_fb, qe_tw = (fb, tw) if variant.qe else (None, None)

    def queries(name: str, project: Callable[[np.ndarray], np.ndarray]) -> list[np.ndarray]:
        return [project(vectors) for vectors in variant.query_vectors(name, images[name])]

    q_tw, q_fb = queries("twitter", p_fb), queries("facebook", p_tw)
    q_photo = queries("photo", p_fb)

    async def go() -> dict[str, dict[str, float]]:
        with tempfile.TemporaryDirectory(prefix="magpie-quality-") as root:
            index = EdgeIndex(Path(root), optimize_after=0)
            await index.start()
            try:
                await build_index(index, "fb", items, fb)
                await build_index(index, "tw", items, tw)
                return {
                    "tw->fb": await evaluate(index, "fb", items, q_tw, expand=qe_fb),
                    "fb->tw": await evaluate(index, "tw", items, q_fb, expand=qe_tw),
                    "photo": await evaluate(index, "fb", items, q_photo, expand=qe_fb),
                    "tw->fb|cat": await evaluate(index, "fb", items, q_tw, filtered=True,
                                                 expand=qe_fb),
                }
            finally:
                await index.stop()

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="emoji to use (seeded subset)")
    parser.add_argument("--variant", action="append", default=None,
                        help="variant spec, repeatable (default: base)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--model-cache", type=Path, default=DEFAULT_MODELS)
    parser.add_argument("--model", default=None, help="model spec (default: the registry's)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    parser.add_argument("--vector-cache", type=Path, default=DEFAULT_VECTORS,
                        help="where the vectors of the synthetic views are kept between runs")
    parser.add_argument("--fit-sample", type=int, default=None,
                        help="fit `lw` on this many catalog items (a seeded subset, as "
                             "an application that was fitted while small), apply to all")
    args = parser.parse_args()

    roots = fetch(args.cache_dir)
    items = load_items(roots, args.limit)
    started = time.perf_counter()
    images = {v: [normalise(it.files[v].read_bytes()) for it in items] for v in VENDORS}
    images["photo"] = [normalise(photo_like(it.files["facebook"], SEED * 100_003 + i))
                       for i, it in enumerate(items)]
    print(f"{len(items)} emoji, {sum(map(len, images.values()))} images decoded and generated "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    kwargs = {"default_model": args.model} if args.model else {}
    registry = ModelRegistry(args.model_cache, threads=args.threads, **kwargs)
    embedder = registry.get()
    if not isinstance(embedder, OnnxImageEmbedder) and args.variant not in (None, ["base"]):
        raise SystemExit("variants other than 'base' need an EfficientNet (ONNX) model")
    print(f"model {embedder.name} ({IMAGE_SIZES.get(embedder.name, '?')} px), "
          f"version {embedder.version}", file=sys.stderr)

    sets = ("tw->fb", "fb->tw", "photo", "tw->fb|cat")
    header = f"{'variant':<22}" + "".join(f"{s + ' R@1/R@10/mAP':>27}" for s in sets) + \
        f"{'img/s':>8}"
    rows = []
    for spec in args.variant or ["base"]:
        variant = Variant(spec, embedder, args.model_cache, args.threads, args.vector_cache,
                          args.fit_sample)
        t0 = time.perf_counter()
        res = run_variant(variant, items, images)
        rate = variant.count / variant.seconds
        rows.append(f"{spec:<22}" + "".join(
            f"{r['R@1']:>11.3f}{r['R@10']:>7.3f}{r['mAP@10']:>9.3f}"
            for r in (res[s] for s in sets)) + f"{rate:>8.1f}")
        print(rows[-1], f"  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    print(f"n={len(items)} emoji per set, model {embedder.name}")
    print(header)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
