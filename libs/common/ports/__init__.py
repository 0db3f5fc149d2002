"""Ports: the Protocols every adapter implements. Services depend on these only."""
from magpie.common.ports.bus import Bus, Handler
from magpie.common.ports.embedder import ImageEmbedder
from magpie.common.ports.index import FacetCount, Hit, IndexPoint, RebuildableIndex, VectorIndex
from magpie.common.ports.object_store import ObjectStore

__all__ = ["Bus", "FacetCount", "Handler", "Hit", "ImageEmbedder", "IndexPoint", "ObjectStore", "RebuildableIndex",
           "VectorIndex"]
