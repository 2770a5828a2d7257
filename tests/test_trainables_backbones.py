"""Backbones: every registered one builds, runs, and keeps its body independent of the head."""

from __future__ import annotations

import pytest
import torch

from trainables import create_backbone, list_backbones
from trainables.backbones import SmoothedReLU

SMALL = {"in_chans": 1, "input_size": 32, "patch_size": 8}


@pytest.mark.parametrize("name", list_backbones())
def test_backbone_runs_and_swaps_its_head(name):
    torch.manual_seed(0)
    model = create_backbone(name, 3, **SMALL)
    x = torch.randn(2, 1, 32, 32)
    assert model(x).shape == (2, 3)
    assert model.features(x).shape == (2, model.num_features)
    model.reset_head(7)
    assert model(x).shape == (2, 7)


@pytest.mark.parametrize("name", ["twolayer", "resnet18"])
def test_body_init_does_not_depend_on_num_classes(name):
    torch.manual_seed(5)
    a = create_backbone(name, 4, **SMALL)
    torch.manual_seed(5)
    b = create_backbone(name, 512, **SMALL)
    assert a.num_features == b.num_features  # width never depends on the classes
    for (key, pa), (_, pb) in zip(
        a.body.state_dict().items(), b.body.state_dict().items(), strict=True
    ):
        assert torch.equal(pa, pb), key


def test_twolayer_is_patchwise_with_sum_pooling():
    model = create_backbone("twolayer", 2, **SMALL, width=5)
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, :8, :8] = torch.randn(8, 8)
    moved = torch.zeros_like(x)
    moved[0, 0, 16:24, 8:16] = x[0, 0, :8, :8]
    # Same patch at another position: same features (shared layer, sum pooling).
    assert torch.allclose(model.features(x), model.features(moved), atol=1e-6)


def test_smoothed_relu_is_polynomial_then_linear():
    act = SmoothedReLU(q=3, rho=1.0)
    z = torch.tensor([-1.0, 0.5, 1.0, 3.0])
    expected = torch.tensor([0.0, 0.5**3 / 3, 1 / 3, 3 - 2 / 3])
    assert torch.allclose(act(z), expected)


def test_unknown_backbone_is_named():
    with pytest.raises(RuntimeError, match=r"Unknown backbone \(resnet_nope\)"):
        create_backbone("resnet_nope", 2)
