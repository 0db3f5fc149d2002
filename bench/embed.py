"""Images per second of the default image model: onnxruntime at batch 1/8/32, PyTorch for scale.

Usage: python bench/embed.py [--n 256] [--size 224] [--threads N] [--torch-n 64] [--no-torch]
Prints the ONNX export time (into a fresh folder), end-to-end rates (PIL preprocessing +
model), model-only rates, and peak RSS (before and after PyTorch is imported).
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from magpie.embedding.models.efficientnet import (
    DEFAULT_MODEL,
    MEAN,
    STD,
    _build_network,
    fit_pad,
    load_efficientnet,
)

EXPORT = ("from pathlib import Path; from magpie.embedding.models.efficientnet import ensure_onnx; "
          "ensure_onnx(Path({tmp!r}), 'efficientnet-lite0', {size})")


def synthetic_images(n: int, seed: int = 0) -> list[Image.Image]:
    """`n` 400x300 pictures of shapes on gradients, like a catalog of varied products."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, 400)[None, :, None]
    images = []
    for _ in range(n):
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        image = Image.fromarray((c0 * (1 - ramp) + c1 * ramp).repeat(300, 0).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(5):
            x, y = int(rng.integers(0, 300)), int(rng.integers(0, 200))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            draw.ellipse([x, y, x + int(rng.integers(20, 100)), y + int(rng.integers(20, 100))],
                         fill=colour)
        images.append(image)
    return images


def rate(n_items: int, batch: int, run: Callable[[int, int], object]) -> float:
    """Items per second of `run(start, stop)` over `n_items`, after one warm-up batch."""
    run(0, batch)
    started = time.perf_counter()
    for start in range(0, n_items, batch):
        run(start, min(start + batch, n_items))
    return n_items / (time.perf_counter() - started)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=None, help="ORT intra-op threads")
    parser.add_argument("--torch-n", type=int, default=64, help="images for the PyTorch runs")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()

    images = synthetic_images(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        # Exported in a child process, so that this one's RSS is what serving costs.
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", EXPORT.format(tmp=tmp, size=args.size)],
                       check=True)
        print(f"export to ONNX + check: {time.perf_counter() - started:.1f} s "
              "(a fresh process importing torch; a cached load skips it)")
        embedder = load_efficientnet(Path(tmp), DEFAULT_MODEL, args.size, threads=args.threads)
    print(f"{DEFAULT_MODEL} {args.size}px, n={args.n}, "
          f"ORT intra-op threads={args.threads or 'all cores'}")

    pixels = np.stack([fit_pad(image, args.size) for image in images])
    started = time.perf_counter()
    for image in images:
        fit_pad(image, args.size)
    print(f"  preprocessing alone (PIL fit+pad): {args.n / (time.perf_counter() - started):7.1f}"
          " images/s")
    session = embedder._session
    for batch in (1, 8, 32):
        end_to_end = rate(args.n, batch, lambda a, b: embedder.embed(images[a:b]))
        model_only = rate(args.n, batch, lambda a, b: session.run(None, {"images": pixels[a:b]}))
        print(f"  onnxruntime batch {batch:2d}: {end_to_end:7.1f} images/s end to end, "
              f"{model_only:7.1f} model only")
    print(f"  peak RSS without torch: {peak_rss_mib():.0f} MiB")

    if args.no_torch:
        return
    import torch

    net = _build_network(DEFAULT_MODEL, args.size).net  # the bare NCHW float network
    n = min(args.torch_n, args.n)
    nchw = ((torch.from_numpy(pixels[:n]).float() - MEAN) / STD).permute(0, 3, 1, 2).contiguous()
    with torch.inference_mode():
        eager = rate(n, 32, lambda a, b: net.extract_features(nchw[a:b]).mean(dim=(2, 3)))
        net.to(memory_format=torch.channels_last)
        nhwc = nchw.contiguous(memory_format=torch.channels_last)
        last = rate(n, 32, lambda a, b: net.extract_features(nhwc[a:b]).mean(dim=(2, 3)))
    print(f"  torch eager batch 32 (n={n}): {eager:7.1f} images/s model only")
    print(f"  torch channels_last batch 32 (n={n}): {last:7.1f} images/s model only")
    print(f"  peak RSS with torch: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
