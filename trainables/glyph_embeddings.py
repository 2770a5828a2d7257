"""Target-independent per-leaf embeddings of the glyph dataset, for its cluster hierarchies.

The paper clusters classes by an image embedding trained on other data
(CLIP). The glyph analogue here needs no download:

- ``heldout`` (the default): a small CNN (timm ``test_resnet``) trained to
  tell apart characters that are *not* in the sweep and share no radical with
  any sweep character, on the training fonts; a leaf's embedding is the mean
  of its renders' penultimate features. It never sees a sweep character, a
  radical label or a test font, so it is independent of the target.
- ``pixels``: PCA of each leaf's mean render (no learning at all).

Both are cached on disk next to the renders, keyed by every dataset setting.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from trainables.data import Split, cached_array, mean_input_embeddings

HELDOUT_BACKBONE = "test_resnet"
HELDOUT_EPOCHS = 10
HELDOUT_LR = 0.1
HELDOUT_BATCH = 64
# Part of the cache key: a changed recipe trains the embedding anew.
HELDOUT_SETTINGS = (HELDOUT_BACKBONE, HELDOUT_EPOCHS, HELDOUT_LR, HELDOUT_BATCH, "onecycle")


def pixel_pca_embeddings(train: Split, num_leaves: int, dims: int = 64) -> np.ndarray:
    """Per leaf, its mean render projected on the top `dims` principal components of the means."""
    means = mean_input_embeddings(train.inputs.float() / 255.0, train.leaf, num_leaves)
    centred = means - means.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return (centred @ vt[: min(dims, len(vt))].T).astype(np.float32)


def heldout_cnn_embeddings(
    train: Split,
    num_leaves: int,
    heldout_images: np.ndarray,
    heldout_labels: np.ndarray,
    *,
    transform: Callable[[torch.Tensor, bool], torch.Tensor],
    seed: int = 0,
    epochs: int = HELDOUT_EPOCHS,
) -> np.ndarray:
    """Train `HELDOUT_BACKBONE` on the held-out characters, then embed every sweep leaf.

    `heldout_images`: uint8 [N, 1, H, W]; `heldout_labels`: character id per image;
    `transform`: the dataset's batch transform (uint8 -> model input).
    """
    from trainables.backbones import create_backbone

    if len(heldout_images) == 0:
        raise ValueError("the held-out embedding needs held-out characters (heldout_chars >= 2)")
    images = torch.from_numpy(np.ascontiguousarray(heldout_images))
    labels = torch.as_tensor(heldout_labels, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = create_backbone(
        HELDOUT_BACKBONE,
        int(labels.max()) + 1,
        in_chans=images.shape[1],
        input_size=images.shape[-1],
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=HELDOUT_LR, momentum=0.9, weight_decay=1e-4)
    steps = epochs * -(-len(images) // HELDOUT_BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, HELDOUT_LR, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), HELDOUT_BATCH):
            idx = order[start : start + HELDOUT_BATCH]
            loss = torch.nn.functional.cross_entropy(
                model(transform(images[idx], True)), labels[idx]
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        feats = torch.cat(
            [
                model.features(transform(train.inputs[i : i + 512], False))
                for i in range(0, len(train), 512)
            ]
        )
    return mean_input_embeddings(feats, train.leaf, num_leaves)


GLYPH_EMBEDDINGS = ("heldout", "pixels")


def glyph_embeddings(
    kind: str,
    *,
    train: Split,
    num_leaves: int,
    heldout: Callable[[], tuple[np.ndarray, np.ndarray]],
    cache_file: Path,
    transform: Callable[[torch.Tensor, bool], torch.Tensor],
) -> np.ndarray:
    """The `kind` embedding of every leaf [num_leaves, d], from `cache_file` or computed and cached.

    `heldout` returns the held-out characters' (images, labels) when called
    (rendering them only when the embedding must be trained).
    """
    if kind not in GLYPH_EMBEDDINGS:
        raise ValueError(f"unknown glyph embedding {kind!r}; known: {', '.join(GLYPH_EMBEDDINGS)}")

    def compute() -> np.ndarray:
        if kind == "pixels":
            return pixel_pca_embeddings(train, num_leaves)
        images, labels = heldout()
        return heldout_cnn_embeddings(train, num_leaves, images, labels, transform=transform)

    return cached_array(cache_file, lambda: np.asarray(compute(), dtype=np.float32))
