"""`faceswap-pl export` writes: the generator files and model card (:mod:`.writer`), registry entries (:mod:`.registry`).

Reading an export is the inference side's (:mod:`faceswap_pl.inference.export_format`, :mod:`faceswap_pl.inference.exported`).
"""

from faceswap_pl.export.registry import register_export
from faceswap_pl.export.writer import ExportError, OnnxVerificationError, export_generator

__all__ = ["ExportError", "OnnxVerificationError", "export_generator", "register_export"]
