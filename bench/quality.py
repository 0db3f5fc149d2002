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

Variants (`--variant`, repeatable; steps joined with '+', e.g. `trim+flip+hist`), all built in
this file around the production embedder's ONNX session; production code is unchanged:
- base       the production embedder as served (`embed`): fit + pad with the border colour;
- trim       crop uniform borders (pixels within 12 of the border colour) before fit + pad;
- padR       after trimming, add a margin of R % of the long side (e.g. pad10);
- flip       average the features of the image and its mirror image (2 model runs);
- ms         multi-scale: average features at 224 and at 288 px input (second ONNX export of
             the same network through the production `load_efficientnet`, image_size=288);
- gemP, max  GeM pooling (gem: p = 3; gemP: p = P, e.g. gem4) or max pooling
             pooling, over the last feature map; the production ONNX file is reused with that
             feature map exposed as an extra graph output (no re-export);
- sqrt       signed square root of the pooled features before L2 (power normalisation);
- hist       fuse a colour histogram (HSV 8x4x4 of the non-background pixels, Hellinger):
             vector = [sqrt(1-w) cnn, sqrt(w) hist], w = 0.3 (histW sets w, e.g. hist50);
- white      PCA-whitening (256 d, shrunk) fitted on the CATALOG vectors only, applied to both.
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
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from magpie.common.events.control import FieldSpec
from magpie.common.filters import AnyOf
from magpie.common.ports.index import IndexPoint
from magpie.embedding.models.efficientnet import (
    IMAGE_SIZES, OnnxImageEmbedder, _session, fit_pad, load_efficientnet,
)
from magpie.embedding.registry import ModelRegistry
from magpie.image_fetch.images import decode_and_normalise
from magpie.search.index.edge import EdgeIndex

VENDORS = ("twitter", "facebook")
PACKAGE = "emoji-datasource-{}"
DEFAULT_CACHE = Path.home() / ".cache" / "magpie" / "emoji"
DEFAULT_MODELS = Path.home() / ".cache" / "magpie" / "models"
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
    """The image as ingest hands it to the embedder (RGB, alpha composited on white)."""
    return decode_and_normalise(data, min_side=16, warn_side=0).image


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

def border_colour(a: np.ndarray) -> np.ndarray:
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    return np.median(border, axis=0)


def foreground(a: np.ndarray, tol: int = 12) -> np.ndarray:
    """Mask of the pixels that differ from the border colour by more than `tol`."""
    return np.abs(a.astype(np.int16) - border_colour(a).astype(np.int16)).max(axis=2) > tol


def trim(image: Image.Image, pad: float = 0.0) -> Image.Image:
    """The image cropped to its non-uniform part, plus a margin of `pad` x the long side."""
    a = np.asarray(image)
    mask = foreground(a)
    if not mask.any():
        return image
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    if (y1 - y0) < 4 or (x1 - x0) < 4:
        return image
    cropped = image.crop((int(x0), int(y0), int(x1), int(y1)))
    if pad <= 0:
        return cropped
    m = int(round(pad * max(cropped.size)))
    out = Image.new("RGB", (cropped.width + 2 * m, cropped.height + 2 * m),
                    tuple(int(c) for c in border_colour(a)))
    out.paste(cropped, (m, m))
    return out


def colour_hist(image: Image.Image) -> np.ndarray:
    """HSV 8x4x4 histogram of the foreground pixels, square-rooted and L2-normalised."""
    small = image.copy()
    small.thumbnail((96, 96))
    rgb = np.asarray(small)
    mask = foreground(rgb)
    if mask.sum() < 16:
        mask = np.ones(mask.shape, bool)
    hsv = np.asarray(small.convert("HSV"))[mask].astype(np.int32)
    idx = (hsv[:, 0] * 8 // 256) * 16 + (hsv[:, 1] * 4 // 256) * 4 + hsv[:, 2] * 4 // 256
    hist = np.bincount(idx, minlength=128).astype(np.float32)
    hist = np.sqrt(hist / hist.sum())
    return hist / max(np.linalg.norm(hist), 1e-12)


def fmap_session(path: Path, threads: int | None) -> Any:
    """A session of the production ONNX file that also outputs the map the pooling averages."""
    import onnx

    model = onnx.load(str(path))
    pool = next(n for n in model.graph.node if n.output[0] == model.graph.output[0].name)
    fmap = onnx.helper.make_tensor_value_info(pool.input[0], onnx.TensorProto.FLOAT, None)
    model.graph.output.append(fmap)
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / path.name
        onnx.save(model, str(dest))
        return _session(dest, threads)


class Variant:
    """An embedding function built around the production embedder's ONNX session."""

    def __init__(self, spec: str, embedder: OnnxImageEmbedder, model_cache: Path,
                 threads: int | None) -> None:
        self.spec = spec
        steps = spec.split("+")
        self.base = steps == ["base"]
        self.trim = any(s == "trim" or s.startswith("pad") for s in steps)
        pads = [float(s[3:]) / 100 for s in steps if re.fullmatch(r"pad\d+", s)]
        self.pad = pads[0] if pads else 0.0
        self.flip = "flip" in steps
        self.sqrt = "sqrt" in steps
        self.white = "white" in steps
        hists = [s for s in steps if re.fullmatch(r"hist\d*", s)]
        self.hist_w = (float(hists[0][4:]) / 100 if hists[0][4:] else 0.3) if hists else 0.0
        pools = [s for s in steps if re.fullmatch(r"gem\d*|max", s)]
        self.pool = pools[0] if pools else None
        self.gem_p = (float(self.pool[3:] or 3) if self.pool and self.pool.startswith("gem")
                      else None)
        known = re.compile(r"base|trim|pad\d+|flip|ms|sqrt|white|hist\d*|gem\d*|max")
        bad = [s for s in steps if not known.fullmatch(s)]
        if bad:
            raise SystemExit(f"unknown variant step(s) {bad} in {spec!r}")
        self.models = [embedder]
        if "ms" in steps:
            self.models.append(load_efficientnet(model_cache, embedder.name, image_size=288,
                                                 threads=threads))
        self.sessions = [fmap_session(m.path, threads) if self.pool else m._session
                         for m in self.models]
        self.embedder = embedder
        self.seconds = 0.0
        self.count = 0

    def _pool(self, fmap: np.ndarray) -> np.ndarray:
        if self.pool == "max":
            return fmap.max(axis=(2, 3))
        p = self.gem_p
        return np.power(np.power(np.maximum(fmap, 1e-6), p).mean(axis=(2, 3)), 1 / p)

    def _features(self, model: OnnxImageEmbedder, session: Any,
                  images: Sequence[Image.Image]) -> np.ndarray:
        out = []
        for start in range(0, len(images), model.max_batch):
            batch = np.stack([fit_pad(im, model.image_size)
                              for im in images[start:start + model.max_batch]])
            if self.flip:
                batch = np.concatenate([batch, batch[:, :, ::-1]])
            outs = session.run(None, {model._input: np.ascontiguousarray(batch)})
            f = self._pool(outs[1]) if self.pool else outs[0]
            if self.flip:
                f = (f[:len(f) // 2] + f[len(f) // 2:]) / 2
            out.append(f)
        return np.concatenate(out)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        started = time.perf_counter()
        if self.base:
            vecs = self.embedder.embed(images)
        else:
            prepared = [trim(im, self.pad) for im in images] if self.trim else list(images)
            feats = sum(self._l2(self._features(m, s, prepared))
                        for m, s in zip(self.models, self.sessions))
            if self.sqrt:
                feats = np.sqrt(np.maximum(feats, 0))
            vecs = self._l2(feats)
            if self.hist_w:
                hist = np.stack([colour_hist(im) for im in prepared])
                vecs = np.hstack([np.sqrt(1 - self.hist_w) * vecs, np.sqrt(self.hist_w) * hist])
        self.seconds += time.perf_counter() - started
        self.count += len(images)
        return vecs.astype(np.float32)

    @staticmethod
    def _l2(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def fit_whitening(self, catalog: np.ndarray, dims: int = 256,
                      shrink: float = 0.1) -> Callable[[np.ndarray], np.ndarray]:
        """PCA-whitening fitted on catalog vectors only (identity unless 'white')."""
        if not self.white:
            return lambda x: x
        mean = catalog.mean(axis=0)
        _, s, vt = np.linalg.svd(catalog - mean, full_matrices=False)
        dims = min(dims, len(s))
        var = s[:dims] ** 2 / len(catalog)
        scale = 1 / np.sqrt(var + shrink * var.mean())
        proj = vt[:dims].T * scale
        return lambda x: self._l2((x - mean) @ proj).astype(np.float32)


# ---------------------------------------------------------------- evaluation

FIELDS = [FieldSpec(name="category", type="string", searchable=True),
          FieldSpec(name="subcategory", type="string", searchable=True)]


async def build_index(index: EdgeIndex, app: str, items: list[Item], vecs: np.ndarray) -> None:
    await index.ensure_collection(app, vecs.shape[1], FIELDS)
    await index.upsert(app, [IndexPoint(it.code, v.tolist(),
                                        {"category": it.category, "subcategory": it.subcategory})
                             for it, v in zip(items, vecs)])


async def evaluate(index: EdgeIndex, app: str, items: list[Item], queries: np.ndarray,
                   filtered: bool = False) -> dict[str, float]:
    r1 = r10 = ap = 0.0
    for it, q in zip(items, queries):
        flt = (AnyOf("category", (it.category,)),) if filtered else ()
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
    vec = {name: variant.embed(ims) for name, ims in images.items()}
    # Whitening, when asked for, is fitted on each catalog alone; queries are only projected.
    w_fb = variant.fit_whitening(vec["facebook"])
    w_tw = variant.fit_whitening(vec["twitter"])

    async def go() -> dict[str, dict[str, float]]:
        with tempfile.TemporaryDirectory(prefix="magpie-quality-") as root:
            index = EdgeIndex(Path(root), optimize_after=0)
            await index.start()
            try:
                await build_index(index, "fb", items, w_fb(vec["facebook"]))
                await build_index(index, "tw", items, w_tw(vec["twitter"]))
                return {
                    "tw->fb": await evaluate(index, "fb", items, w_fb(vec["twitter"])),
                    "fb->tw": await evaluate(index, "tw", items, w_tw(vec["facebook"])),
                    "photo": await evaluate(index, "fb", items, w_fb(vec["photo"])),
                    "tw->fb|cat": await evaluate(index, "fb", items, w_fb(vec["twitter"]),
                                                 filtered=True),
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
        variant = Variant(spec, embedder, args.model_cache, args.threads)
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
