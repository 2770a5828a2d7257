"""Per-class embeddings for cluster hierarchies: open_clip from a local weights file.

Nothing is downloaded: `weights_path` must name a checkpoint on disk (an
open_clip / OpenAI CLIP state dict). Texts are encoded with the model's text
tower, images (PIL images or image file paths) with its image tower; outputs
are L2-normalised, one row per input.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np


def _load_open_clip(model_name: str, weights_path: str | os.PathLike, device: str):
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise FileNotFoundError(
            f"open_clip weights file {str(weights_path)!r} not found; download the "
            f"{model_name} checkpoint on a machine with internet and pass its path "
            "(this project never downloads weights)"
        )
    import open_clip

    if model_name not in open_clip.list_models():
        raise ValueError(
            f"unknown open_clip model {model_name!r}; known: {', '.join(open_clip.list_models()[:20])}, "
            "... (or register a config with open_clip.add_model_config)"
        )
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name, pretrained=str(weights_path), device=device
    )
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(model_name)


def clip_embeddings(
    inputs: Sequence[str] | Sequence[object],
    *,
    model_name: str,
    weights_path: str | os.PathLike,
    modality: Literal["auto", "text", "image"] = "auto",
    batch_size: int = 64,
    device: str = "cpu",
) -> np.ndarray:
    """Embeddings [len(inputs), d] of texts or images with an open_clip model from local weights.

    `modality="auto"` treats `str` inputs as texts and anything else
    (PIL images, `pathlib.Path`s to image files) as images; pass
    `modality="image"` for image paths given as strings.

    >>> clip_embeddings(["a photo of a cat."], model_name="ViT-B-32",
    ...                 weights_path="missing.pt")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    FileNotFoundError: open_clip weights file 'missing.pt' not found; ...
    """
    import torch

    inputs = list(inputs)
    if modality == "auto":
        modality = "text" if all(isinstance(x, str) for x in inputs) else "image"
    if modality not in ("text", "image"):
        raise ValueError(f"unknown modality {modality!r}; accepted: 'auto', 'text', 'image'")
    model, preprocess, tokenizer = _load_open_clip(model_name, weights_path, device)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size]
            if modality == "text":
                features = model.encode_text(tokenizer([str(t) for t in batch]).to(device))
            else:
                from PIL import Image

                images = [
                    Image.open(x).convert("RGB") if isinstance(x, (str, Path)) else x for x in batch
                ]
                pixels = torch.stack([preprocess(image) for image in images]).to(device)
                features = model.encode_image(pixels)
            features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            chunks.append(features.float().cpu().numpy())
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(chunks)


def class_name_embeddings(
    class_names: Sequence[str],
    *,
    model_name: str,
    weights_path: str | os.PathLike,
    template: str = "a photo of a {}.",
    device: str = "cpu",
) -> np.ndarray:
    """Text embeddings of class names through a prompt template (CLIP's zero-shot recipe)."""
    texts = [template.format(name.replace("_", " ")) for name in class_names]
    return clip_embeddings(
        texts, model_name=model_name, weights_path=weights_path, modality="text", device=device
    )


def mean_embedding_per_class(
    embeddings: np.ndarray, leaf_labels: np.ndarray, *, num_leaves: int
) -> np.ndarray:
    """The mean embedding of each leaf class's examples, [num_leaves, d]; a class with no example
    raises ValueError naming it (its cluster would be arbitrary)."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    leaf_labels = np.asarray(leaf_labels, dtype=np.int64)
    if embeddings.shape[0] != leaf_labels.shape[0]:
        raise ValueError(f"{embeddings.shape[0]} embeddings for {leaf_labels.shape[0]} leaf labels")
    counts = np.bincount(leaf_labels, minlength=num_leaves)
    if (counts == 0).any():
        raise ValueError(f"leaf class {int(np.argmax(counts == 0))} has no example to average")
    totals = np.zeros((num_leaves, embeddings.shape[1]))
    np.add.at(totals, leaf_labels, embeddings)
    return totals / counts[:, None]
