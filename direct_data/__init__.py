"""direct-data: contrastive negatives for DiReCT physics post-training of text-to-video models."""

__version__ = "0.1.0"
