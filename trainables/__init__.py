"""What one trial runs: datasets, backbones, pretrain -> finetune -> evaluate."""

from __future__ import annotations

from trainables.backbones import Classifier, create_backbone, list_backbones
from trainables.data import (
    Dataset,
    Split,
    create_dataset,
    is_dataset,
    list_datasets,
    register_dataset,
    subset_indices,
    train_val_indices,
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
    "is_dataset",
    "list_backbones",
    "list_datasets",
    "register_dataset",
    "subset_indices",
    "train",
    "train_val_indices",
]
