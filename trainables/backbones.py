"""Backbones: the theory's `twolayer` network and any timm model, behind one registry.

Every backbone is a `Classifier`: a `body` mapping inputs to a feature vector
of fixed width (`num_features`, never dependent on the number of classes) and
a linear `head`. `features(x)` gives the body's output; `reset_head(n)` swaps
in a fresh head for finetuning or a linear probe.

Example:
    >>> model = create_backbone("twolayer", 4, in_chans=1, input_size=32, patch_size=8)
    >>> model(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 4])
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from contracts import Registry


class Classifier(nn.Module):
    """A feature extractor (`body`) plus a linear `head` over its features."""

    def __init__(self, body: nn.Module, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.num_features = num_features
        self.head = nn.Linear(num_features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def reset_head(self, num_classes: int) -> None:
        """Replace the head by a freshly initialised one with `num_classes` outputs."""
        device = self.head.weight.device
        self.head = nn.Linear(self.num_features, num_classes).to(device)


# ---- twolayer ---------------------------------------------------------------
class SmoothedReLU(nn.Module):
    """The paper's smoothed ReLU: z^q / (q rho^(q-1)) on [0, rho], z - (1 - 1/q) rho above.

    Polynomial near zero, so features a neuron already correlates with grow
    faster than weak ones (the winner-takes-all dynamics of the theory).
    """

    def __init__(self, q: float = 3.0, rho: float = 1.0) -> None:
        super().__init__()
        self.q, self.rho = float(q), float(rho)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.clamp(min=0)
        small = z.pow(self.q) / (self.q * self.rho ** (self.q - 1))
        large = z - (1 - 1 / self.q) * self.rho
        return torch.where(z <= self.rho, small, large)


class TwoLayerBody(nn.Module):
    """First layer shared over patches (conv, kernel = stride = patch), activation, sum pooling."""

    def __init__(self, in_chans: int, width: int, patch_size: int, activation: nn.Module) -> None:
        super().__init__()
        self.patch = nn.Conv2d(
            in_chans, width, kernel_size=patch_size, stride=patch_size, bias=False
        )
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.patch(x)).sum(dim=(2, 3))


TWOLAYER_ACTIVATIONS = ("relu", "srelu")


def _twolayer(
    num_classes: int,
    *,
    in_chans: int = 1,
    input_size: int = 32,
    patch_size: int = 8,
    width: int = 64,
    activation: str = "relu",
    q: float = 3.0,
    rho: float = 1.0,
    init_std: float | None = 0.01,
) -> Classifier:
    if input_size % patch_size:
        raise ValueError(f"input_size {input_size} is not a multiple of patch_size {patch_size}")
    activations: dict[str, Callable[[], nn.Module]] = {
        "relu": nn.ReLU,
        "srelu": lambda: SmoothedReLU(q, rho),
    }
    if activation not in activations:
        raise ValueError(f"unknown activation {activation!r}; use one of {TWOLAYER_ACTIVATIONS}")
    body = TwoLayerBody(in_chans, width, patch_size, activations[activation]())
    if init_std is not None:
        # The theory starts from small Gaussian weights: then the features are
        # what training learned, not what a random projection happens to keep
        # (PyTorch's default init lets a probe decode fine classes from
        # untrained features, which hides the coarse-pretraining failure).
        nn.init.normal_(body.patch.weight, std=init_std)
    return Classifier(body, width, num_classes)


# ---- timm -------------------------------------------------------------------
def _timm(
    name: str, num_classes: int, *, in_chans: int = 3, input_size: int = 224, **kwargs
) -> Classifier:
    import timm

    if not timm.is_model(name):
        raise RuntimeError(f"Unknown backbone ({name}); known: {', '.join(list_backbones())}")
    base = dict(pretrained=False, num_classes=0, in_chans=in_chans, **kwargs)
    try:
        # Models with a fixed input size (ViT, ...) must be told ours.
        body = timm.create_model(name, img_size=input_size, **base)
    except TypeError:
        body = timm.create_model(name, **base)
    return Classifier(body, int(body.num_features), num_classes)


_BACKBONES = Registry("backbone")
# A few timm names listed for discovery and registry-parametrized tests; any
# other timm model name works too.
_LISTED_TIMM = ("resnet18", "resnet34", "resnet50", "vit_tiny_patch16_224", "vit_small_patch16_224")


def register_backbone(
    name: str,
) -> Callable[[Callable[..., Classifier]], Callable[..., Classifier]]:
    """Decorator: register `fn(num_classes, **options) -> Classifier` as backbone `name`."""
    return _BACKBONES.register(name)


register_backbone("twolayer")(_twolayer)


def list_backbones() -> list[str]:
    """Backbone names: `twolayer` plus commonly used timm models (any timm name is accepted)."""
    return _BACKBONES.names() + list(_LISTED_TIMM)


def is_backbone(name: str) -> bool:
    """A registered backbone, or any timm model name."""
    if _BACKBONES.has(name):
        return True
    import timm

    return bool(timm.is_model(name))


# Options every backbone takes (timm models pass any other to timm.create_model).
_COMMON_OPTIONS = ("in_chans", "input_size", "patch_size")


def validate_backbone_options(name: str, options: Mapping[str, Any]) -> None:
    """Check backbone `name`'s options without building it: names, types and ranges.

    A registered backbone's options are its builder's keyword arguments: an
    unknown one is refused, each must have its default's type (a float takes
    an int; None where the default is None), integers are sizes (>= 1) and
    floats are finite and > 0 where the default is; `twolayer` also checks its
    `activation` and that `patch_size` divides `input_size`. A timm model's
    own options go to timm unchecked; the common ones are checked.
    ValueError names the option and the accepted values.
    """
    if _BACKBONES.has(name):
        params = inspect.signature(_BACKBONES.get(name)).parameters
        defaults = {k: p.default for k, p in params.items() if k != "num_classes"}
        optional = {k for k, p in params.items() if "None" in str(p.annotation)}
        unknown = sorted(set(options) - set(defaults))
        if unknown:
            raise ValueError(
                f"unknown {name} option {unknown[0]!r}; accepted: {', '.join(sorted(defaults))}"
            )
    else:
        params = inspect.signature(_twolayer).parameters
        defaults = {k: params[k].default for k in _COMMON_OPTIONS}
        optional = set()
    for key, value in options.items():
        if key in defaults and not (value is None and key in optional):
            _check_option(name, key, value, defaults[key])
    if name == "twolayer":
        activation = options.get("activation", defaults["activation"])
        if activation not in TWOLAYER_ACTIVATIONS:
            raise ValueError(
                f"twolayer option activation={activation!r}; accepted: {TWOLAYER_ACTIVATIONS}"
            )
        size = options.get("input_size", defaults["input_size"])
        patch = options.get("patch_size", defaults["patch_size"])
        if size % patch:
            raise ValueError(
                f"twolayer options input_size={size} and patch_size={patch}: patch_size must "
                "divide input_size"
            )


def _check_option(backbone: str, key: str, value: Any, default: Any) -> None:
    """One option against its default's type (and a size's or scale's range)."""
    where = f"{backbone} option {key}={value!r}"
    if isinstance(default, bool) or default is None:
        return  # flags and optional values of other types: left to the builder
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}: expected an integer >= 1")
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or (default > 0 and value <= 0):
            raise ValueError(f"{where}: expected a finite number" + (" > 0" if default > 0 else ""))
    elif isinstance(default, str) and not isinstance(value, str):
        raise ValueError(f"{where}: expected a string")


def create_backbone(name: str, num_classes: int, **options) -> Classifier:
    """Build backbone `name` with a fresh `num_classes`-way head, no pretrained weights.

    The body is built before the head, so under one torch seed the body's
    initialisation is the same whatever `num_classes` is (paired arms).
    Common options: `in_chans`, `input_size`; `twolayer` also takes
    `patch_size`, `width`, `activation` ("relu" | "srelu"), `q`, `rho`,
    `init_std` (default 0.01; None: PyTorch's default init); `patch_size` is ignored by timm models.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if _BACKBONES.has(name):
        return _BACKBONES.create(name, num_classes, **options)
    options.pop("patch_size", None)
    return _timm(name, num_classes, **options)
