"""Optional image embeddings (CLIP-style vision tower from a local checkpoint).

Used for the taxonomy only when ``embedding.image_model`` is configured; items without a readable
image get a zero vector so they cluster on text and behaviour alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


class ImageEmbedder:
    def __init__(self, model_path: Path, batch_size: int = 32):
        import torch
        from transformers import AutoImageProcessor, CLIPVisionModelWithProjection

        self._torch = torch
        self.processor = AutoImageProcessor.from_pretrained(model_path, local_files_only=True)
        self.model = CLIPVisionModelWithProjection.from_pretrained(model_path, local_files_only=True).eval()
        self.batch_size = batch_size
        self.dim = int(self.model.config.projection_dim)

    def embed(
        self, uris: Sequence[str | None], progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, int]:
        """Returns (embeddings, number of images that could not be read)."""
        from PIL import Image, UnidentifiedImageError

        torch = self._torch
        out = np.zeros((len(uris), self.dim), dtype=np.float32)
        failed = 0
        for start in range(0, len(uris), self.batch_size):
            images, rows = [], []
            for i in range(start, min(start + self.batch_size, len(uris))):
                uri = uris[i]
                if not uri:
                    continue
                try:
                    with Image.open(uri) as im:
                        images.append(im.convert("RGB"))
                    rows.append(i)
                except (OSError, UnidentifiedImageError):
                    failed += 1
            if images:
                with torch.inference_mode():
                    pixels = self.processor(images=images, return_tensors="pt")
                    emb = self.model(**pixels).image_embeds
                    out[rows] = torch.nn.functional.normalize(emb, dim=-1).numpy()
            if progress:
                progress(min(self.batch_size, len(uris) - start))
        return out, failed
