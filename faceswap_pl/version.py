"""The package version (read by the build and by `faceswap-pl --version`)."""

__version__ = "0.1.0"
