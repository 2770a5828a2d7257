"""open_clip embeddings from a local weights file (a tiny randomly initialised model here),
and a cluster hierarchy built from them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hierarchy_fixtures import TARGET, reference_hierarchy

from hierarchies import build_hierarchy
from hierarchies.embeddings import (
    class_name_embeddings,
    clip_embeddings,
    mean_embedding_per_class,
)

TINY_MODEL = "granularity-test-tiny"


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny open_clip config registered under TINY_MODEL, its random weights saved to a file."""
    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("open_clip")
    config = {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 32,
            "layers": 1,
            "width": 32,
            "head_width": 16,
            "patch_size": 16,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 1,
        },
    }
    (folder / f"{TINY_MODEL}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder / f"{TINY_MODEL}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_MODEL, pretrained=None)
    weights = folder / "tiny.pt"
    torch.save(model.state_dict(), weights)
    return weights


def test_text_embeddings_are_normalised_and_deterministic(tiny_clip):
    texts = ["a photo of a cat.", "a photo of a dog.", "a photo of an oak."]
    first = clip_embeddings(texts, model_name=TINY_MODEL, weights_path=tiny_clip)
    second = clip_embeddings(texts, model_name=TINY_MODEL, weights_path=tiny_clip, batch_size=2)
    assert first.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(first, second, rtol=1e-5, atol=1e-6)
    assert not np.allclose(first[0], first[1])


def test_image_embeddings_from_pil_images_and_files(tiny_clip, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(2)]
    images[1].save(tmp_path / "b.png")
    out = clip_embeddings(
        [images[0], tmp_path / "b.png"], model_name=TINY_MODEL, weights_path=tiny_clip
    )
    direct = clip_embeddings(images, model_name=TINY_MODEL, weights_path=tiny_clip)
    assert out.shape == (2, 16)
    np.testing.assert_allclose(out, direct, rtol=1e-5, atol=1e-6)


def test_missing_weights_file_is_named_and_nothing_is_downloaded(tmp_path):
    missing = tmp_path / "ViT-L-14.pt"
    with pytest.raises(FileNotFoundError, match=f"weights file '{missing}' not found"):
        clip_embeddings(["a cat"], model_name="ViT-L-14", weights_path=missing)


def test_unknown_model_name_is_named(tiny_clip):
    with pytest.raises(ValueError, match="unknown open_clip model 'no-such-model'"):
        clip_embeddings(["a cat"], model_name="no-such-model", weights_path=tiny_clip)


def test_cluster_hierarchy_from_class_name_embeddings(tiny_clip):
    ref = reference_hierarchy()
    embeddings = class_name_embeddings(
        ref.leaf_names, model_name=TINY_MODEL, weights_path=tiny_clip
    )
    h = build_hierarchy(
        "cluster", reference=ref, embeddings=embeddings, mode="within", target_level=TARGET
    )
    assert h.level_sizes() == ref.level_sizes()


def test_mean_embedding_per_class():
    x = np.array([[0.0, 2.0], [2.0, 0.0], [4.0, 4.0]])
    np.testing.assert_allclose(
        mean_embedding_per_class(x, np.array([0, 0, 1]), num_leaves=2), [[1, 1], [4, 4]]
    )
    with pytest.raises(ValueError, match="leaf class 2 has no example"):
        mean_embedding_per_class(x, np.array([0, 0, 1]), num_leaves=3)
