"""The export format: what `faceswap-pl export` writes and inference reads (names, inputs, config checks).

An export folder holds ``generator.safetensors`` (the generator's weights, plain
:class:`~faceswap_pl.models.aei_net.AEINet` key names), ``generator.json`` (the options that rebuild it, the
identity encoder whose vectors it takes and how they are made), ``generator.onnx`` (inputs ``target``
``(N, 3, S, S)`` and ``source_embedding`` ``(N, D)``, output ``swap``, a dynamic batch axis) and
``model_card.md``. This module holds no torch: the command line names these files without loading torch;
:mod:`faceswap_pl.inference.exported` loads the networks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faceswap_pl.errors import ModelFileError
from faceswap_pl.files import read_json

FORMAT = "faceswap-pl-generator/1"
WEIGHTS_FILE = "generator.safetensors"
CONFIG_FILE = "generator.json"
ONNX_FILE = "generator.onnx"
CARD_FILE = "model_card.md"
INPUT_NAMES = ("target", "source_embedding")
OUTPUT_NAME = "swap"
DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
CHAMPION_ALIAS = "champion"
INPUT_CONVENTIONS = {
    "target": "float32 (N, 3, S, S), RGB, NCHW, values in [-1, 1]; an aligned face crop of S px made as in "
              "training (faceswap_pl.alignment)",
    "source_embedding": "float32 (N, D), the identity encoder's features of the aligned source face (resized "
                        "as identity_resize says), L2-normalised when normalize_identity is true, else raw",
    "swap": "float32 (N, 3, S, S), RGB in [-1, 1], aligned like the target",
}


def read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelFileError(f"Generator config {path} does not exist; keep {CONFIG_FILE} next to the weights "
                             f"(`faceswap-pl export` writes both).")
    config = read_json(path, ModelFileError, "export the generator again with `faceswap-pl export`")
    missing = [k for k in ("backbone", "num_aad_blocks", "image_size", "width", "id_dim") if k not in config]
    if not isinstance(config, dict) or config.get("format") != FORMAT or missing:
        raise ModelFileError(f"{path} is not a faceswap-pl generator config (format {FORMAT!r}, missing "
                             f"{', '.join(missing) or 'nothing'}); export the generator again with `faceswap-pl export`.")
    return config


def export_paths(dir_or_file: str | Path, suffix: str) -> tuple[Path, Path]:
    """``(file with suffix, generator.json)`` for an export folder or one of its files."""
    path = Path(dir_or_file).expanduser()
    if path.is_dir():
        return path / (WEIGHTS_FILE if suffix == ".safetensors" else ONNX_FILE), path / CONFIG_FILE
    if path.suffix == ".json":
        return path.with_suffix(suffix), path
    return path, path.with_suffix(".json")

