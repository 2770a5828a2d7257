"""What one trial runs: datasets, backbones, pretrain -> finetune -> evaluate."""

from __future__ import annotations

# The dataset builders: each module registers its datasets on import.
from trainables import fashion_mnist, glyphs, image_datasets, synthetic  # noqa: F401
from trainables.backbones import (
    Classifier,
    create_backbone,
    is_backbone,
    list_backbones,
    register_backbone,
    validate_backbone_options,
)
from trainables.data import (
    Dataset,
    Split,
    create_dataset,
    is_dataset,
    list_datasets,
    register_dataset,
    subset_indices,
    train_val_indices,
    validate_dataset_options,
)
from trainables.errors import TrialError
from trainables.trial import train

__all__ = [
    "Classifier",
    "Dataset",
    "Split",
    "TrialError",
    "create_backbone",
    "create_dataset",
    "is_backbone",
    "is_dataset",
    "list_backbones",
    "list_datasets",
    "register_backbone",
    "register_dataset",
    "subset_indices",
    "train",
    "train_val_indices",
    "validate_backbone_options",
    "validate_dataset_options",
]
