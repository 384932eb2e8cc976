"""The training lab's engine: training sets and augmentations, losses, and the trainer."""
