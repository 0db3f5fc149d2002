"""Image embedding models; importing this package loads no model and no torch."""
from magpie.embedding.models.efficientnet import (
    OnnxImageEmbedder,
    ensure_onnx,
    export_onnx,
    load_efficientnet,
)
from magpie.embedding.models.sentence import SentenceTransformerImageEmbedder

__all__ = [
    "OnnxImageEmbedder",
    "SentenceTransformerImageEmbedder",
    "ensure_onnx",
    "export_onnx",
    "load_efficientnet",
]
