"""insightface ONNX recognizers (``w600k_r50.onnx``, ``glintr100.onnx``, ...) as frozen torch encoders.

Registered as the prefix ``onnx:``: :func:`~faceswap_pl.models.identity.create_identity_encoder` builds
``onnx:<path>`` with :func:`create_onnx_encoder` and ``path=<path>``.

Input convention, as insightface's ``ArcFaceONNX.get_feat`` applies it (insightface 2.1,
``model_zoo/arcface_onnx.py``): the crop is a BGR uint8 image aligned by ``norm_crop`` on the ArcFace
template; ``cv2.dnn.blobFromImages(imgs, 1 / input_std, (W, H), (input_mean,) * 3, swapRB=True)``
turns it into an NCHW float blob, i.e. the network receives **RGB**, ``(pixel - input_mean) /
input_std``. ``input_mean = input_std = 127.5`` (RGB in [-1, 1]) unless one of the graph's first 8
nodes is named ``Sub*`` / ``_minus*`` and one ``Mul*`` / ``_mul*`` (MXNet exports that normalise
inside the graph), in which case mean 0 and std 1 (raw RGB 0..255). The input size is the graph
input's H x W (112 x 112 for the insightface recognizers). We apply the same rule to the same file.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch

from faceswap_pl.alignment import resize_aligned
from faceswap_pl.errors import ModelFileError
from faceswap_pl.models.frozen import check_image_batch
from faceswap_pl.models.identity.base import IDENTITY_ENCODERS, IdentityEncoder
from faceswap_pl.models.importers.onnx import fold_constants, load_user_onnx, onnx_to_torch


def insightface_normalisation(model: onnx.ModelProto) -> tuple[float, float]:
    """(input_mean, input_std) insightface's ``ArcFaceONNX`` would use for this graph (see module doc)."""
    names = [node.name for node in model.graph.node[:8]]
    has_sub = any(n.startswith("Sub") or n.startswith("_minus") for n in names)
    has_mul = any(n.startswith("Mul") or n.startswith("_mul") for n in names)
    return (0.0, 1.0) if has_sub and has_mul else (127.5, 127.5)


def _graph_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    """The first graph input that is not an initializer (the image)."""
    initializers = {init.name for init in model.graph.initializer}
    for value in model.graph.input:
        if value.name not in initializers:
            return value
    raise ValueError("graph has no data input")


def _static_dims(value: onnx.ValueInfoProto) -> list[int | None]:
    """Dimensions of a graph value, None where symbolic or unknown."""
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in value.type.tensor_type.shape.dim]


class OnnxIdentityEncoder(IdentityEncoder):
    """A recognizer ONNX file behind the :class:`IdentityEncoder` interface.

    ``forward(x)``: x (N, 3, S, S) RGB in [-1, 1] on the ArcFace template scaled to S -> (N, D) unit
    vectors, D read from the graph. Internally: RGB 0..255 -> resize to the graph's input size ->
    ``(pixel - input_mean) / input_std`` (optionally BGR) -> network. Frozen, differentiable in x.

    Args:
        path: the ``.onnx`` file.
        input_mean, input_std: override the insightface rule (see module docstring).
        bgr: feed the network BGR instead of RGB (insightface recognizers want RGB: keep False).
        input_size: crop size when the graph's H/W are symbolic (default 112).
    """

    def __init__(self, path: str | Path, input_mean: float | None = None, input_std: float | None = None,
                 bgr: bool = False, input_size: int | None = None):
        super().__init__()
        self.path = str(Path(path).expanduser())
        what = "ONNX identity model"
        model = load_user_onnx(self.path, what)
        try:
            data = _graph_input(model)
            dims = _static_dims(data)
        except ValueError as exc:
            raise ModelFileError(f"The {what} '{self.path}' has no image input: {exc}.") from None
        if len(dims) != 4 or dims[1] not in (3, None):
            raise ModelFileError(f"The {what} '{self.path}' takes input of shape {dims}; expected (N, 3, H, W).")
        height, width = dims[2], dims[3]
        if height is not None and width is not None and height != width:
            raise ModelFileError(f"The {what} '{self.path}' wants non-square {height}x{width} crops; expected square.")
        self.input_size = int(height or width or input_size or 112)
        mean, std = insightface_normalisation(model)
        self.input_mean = float(mean if input_mean is None else input_mean)
        self.input_std = float(std if input_std is None else input_std)
        self.bgr = bool(bgr)
        try:
            self.net = onnx_to_torch(fold_constants(model), fold=False)
        except Exception as exc:
            raise ModelFileError(f"The {what} '{self.path}' could not be converted to torch "
                                 f"({type(exc).__name__}: {exc}).") from exc
        out_dims = _static_dims(model.graph.output[0])
        if len(out_dims) == 2 and out_dims[1] is not None:
            self.embedding_dim = int(out_dims[1])
        else:
            with torch.no_grad():
                probe = self.net(torch.zeros(1, 3, self.input_size, self.input_size))
            self.embedding_dim = int(probe.reshape(1, -1).shape[1])
        self.freeze()

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) RGB [-1, 1] -> (N, 3, s, s) network input, s = ``input_size``."""
        check_image_batch(x, "ONNX identity encoder")
        x = resize_aligned((x + 1.0) * 127.5, self.input_size)
        if self.bgr:
            x = x.flip(1)
        return (x - self.input_mean) / self.input_std

    def network(self, x: torch.Tensor) -> torch.Tensor:
        """Raw features (N, D) of already-preprocessed network input."""
        out = self.net(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.reshape(out.shape[0], -1)

    def extra_repr(self) -> str:
        return (f"path={self.path!r}, input_size={self.input_size}, mean={self.input_mean}, "
                f"std={self.input_std}, bgr={self.bgr}, embedding_dim={self.embedding_dim}")


def create_onnx_encoder(path: str | Path, **kwargs) -> OnnxIdentityEncoder:
    """Factory for ``onnx:<path>``; kwargs go to :class:`OnnxIdentityEncoder`."""
    return OnnxIdentityEncoder(path, **kwargs)


IDENTITY_ENCODERS.register_prefix("onnx:", create_onnx_encoder, placeholder="<path>")
