"""The restoration role: its registry, and the conventions every restorer here shares."""

from __future__ import annotations

from faceswap_pl.registry import Registry

#: LeakyReLU negative slope used throughout ESRGAN and the face restorer.
LRELU_SLOPE = 0.2
#: the JSON file next to converted or saved weights that names the architecture and its arguments
CONFIG_FILE = "config.json"

#: frozen pretrained restorers by name (implementations register themselves; see the package docstring)
RESTORATION_MODELS = Registry("restoration model")
register_restoration = RESTORATION_MODELS.register
