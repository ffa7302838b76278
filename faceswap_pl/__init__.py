"""faceswap_pl: a PyTorch Lightning experiment framework for one-shot face swapping (GHOST / AEI-Net)."""

__version__ = "0.1.0"
