"""The image types an application can choose; each selects its embedding model."""
from __future__ import annotations

IMAGE_TYPES: dict[str, str] = {
    "fashion": "Apparel, shoes, bags and accessories",
    "furniture": "Furniture and home decor",
    "general": "Any other product imagery",
}
DEFAULT_IMAGE_TYPE = "general"
