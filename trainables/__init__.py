"""What one trial runs: datasets, backbones, pretrain -> finetune -> evaluate."""
