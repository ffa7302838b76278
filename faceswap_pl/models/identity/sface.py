"""SFace (OpenCV zoo, 2021dec) as a frozen, differentiable 128-d identity encoder.

The shipped file is int8 block-quantised (opset 21). :func:`convert` folds it once into a plain fp32
ONNX graph (``sface.onnx`` in the zoo cache); at load time onnx2torch turns that graph into torch
modules (a MobileFaceNet-like network: conv / BatchNorm / PReLU, then a 128-unit Gemm + BatchNorm).

Input convention of the network, read from the graph and OpenCV's ``FaceRecognizerSF`` (which calls
``blobFromImage(..., swapRB=true)`` on a BGR crop): NCHW **RGB**, values 0..255, 112x112 crops on
the ArcFace 5-point template. The graph itself starts with ``(x - 127.5) * 0.0078125``, so it takes
raw pixel values. The output is the raw (unnormalised) 128-d feature ``fc1``; OpenCV compares
features by cosine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from faceswap_pl import zoo
from faceswap_pl.alignment import resize_aligned
from faceswap_pl.models.frozen import check_image_batch
from faceswap_pl.models.identity.base import IdentityEncoder, register_identity
from faceswap_pl.models.importers.onnx import downgrade_opset, fold_constants, onnx_to_torch, ort_session

RAW_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
CONVERTED_FILE = "sface.onnx"
INPUT_SIZE = 112
EMBEDDING_DIM = 128


def convert(raw_dir: Path, out_dir: Path) -> None:
    """Zoo converter: fold the int8bq SFace graph to fp32 and write ``out_dir/sface.onnx``.

    The folded graph is also lowered to opset 17 (what onnx2torch knows), with a dynamic batch axis,
    and checked by running onnxruntime on one blank 112x112 crop.
    """
    model = downgrade_opset(fold_constants(Path(raw_dir) / RAW_FILE))
    out = Path(out_dir) / CONVERTED_FILE
    onnx.save(model, str(out))
    session = ort_session(out)
    blank = np.zeros((1, 3, INPUT_SIZE, INPUT_SIZE), np.float32)
    features = session.run(None, {session.get_inputs()[0].name: blank})[0]
    if features.shape != (1, EMBEDDING_DIM) or not np.isfinite(features).all():
        raise RuntimeError(f"converted SFace gives output {features.shape}, expected (1, {EMBEDDING_DIM})")


class SFaceEncoder(IdentityEncoder):
    """SFace identity encoder.

    ``forward(x)``: x (N, 3, S, S) RGB in [-1, 1], aligned on the ArcFace template scaled to S (any S;
    resized to 112 with antialiasing when larger) -> (N, 128) unit vectors. Differentiable in x;
    parameters frozen, always in eval mode.
    """

    embedding_dim = EMBEDDING_DIM
    input_size = INPUT_SIZE

    def __init__(self, onnx_path: str | Path):
        super().__init__()

        self.onnx_path = str(onnx_path)
        # the cached graph is already folded; no second fold needed
        self.net = onnx_to_torch(onnx_path, fold=False)
        self.freeze()

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) RGB [-1, 1] -> (N, 3, 112, 112) RGB 0..255, the network's input."""
        check_image_batch(x, "SFace")
        return resize_aligned((x + 1.0) * 127.5, self.input_size)

    def network(self, x: torch.Tensor) -> torch.Tensor:
        """Raw 128-d features of already-preprocessed input (N, 3, 112, 112) RGB 0..255."""
        return self.net(x)


@register_identity("sface")
def create_sface(model_dir: str | Path | None = None) -> SFaceEncoder:
    """Build the frozen SFace encoder from the zoo cache (or from ``model_dir`` holding ``sface.onnx``)."""
    folder = Path(model_dir) if model_dir is not None else zoo.require("sface")
    return SFaceEncoder(folder / CONVERTED_FILE)
