"""The one training loop: configs, optimiser and schedule, checkpoints and averaging, DDP."""
