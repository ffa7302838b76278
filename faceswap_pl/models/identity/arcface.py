"""ArcFace recognizers in insightface ``arcface_torch``'s iresnet layout, loaded from a user ``backbone.pth``.

The network is written so that its state-dict keys and shapes equal those of arcface_torch's
``iresnet50`` / ``iresnet100`` (the latter is the ``backbone.pth`` GHOST uses for its identity loss;
see ``tests/data/ghost_state_dict_keys.json``, entry ``iresnet100``).

Network input: (N, 3, 112, 112) RGB normalised as arcface_torch trains and evaluates,
``(pixel / 255 - 0.5) / 0.5``, i.e. [-1, 1] — which is already the project's image convention, so the
adapter only resizes. Output: (N, 512) raw features; :class:`ArcFaceEncoder` L2-normalises them.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from faceswap_pl.alignment import resize_aligned
from faceswap_pl.errors import FaceSwapError
from faceswap_pl.models.frozen import check_image_batch
from faceswap_pl.models.identity.base import IdentityEncoder, register_identity
from faceswap_pl.models.importers.checkpoint import load_checkpoint_file, load_state_dict_strict

# Blocks per stage; arcface_torch names.
IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}
# BatchNorm eps of arcface_torch's PyTorch-trained models (the mxnet-converted ONNX packs use 2e-5;
# eps is not stored in a state dict, so it has to be right here).
BN_EPS = 1e-5


class IBasicBlock(nn.Module):
    """Pre-activation-style residual block: BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, + shortcut.

    Shape: (N, inplanes, H, W) -> (N, planes, H / stride, W / stride).
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=BN_EPS)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=BN_EPS),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    """arcface_torch IResNet: (N, 3, 112, 112) RGB in [-1, 1] -> (N, num_features) raw embedding.

    Stem conv3x3(3->64, stride 1) + BN + PReLU; four stages (64, 128, 256, 512 channels), each starting
    with a stride-2 block, so 112 -> 7; BN; flatten (512*7*7 = 25088); dropout (p=0 as in arcface_torch
    inference); Linear -> num_features; BatchNorm1d ("features", weight fixed at 1 in training).
    """

    spatial = 7  # 112 / 2**4: the fc layer fixes the input size at 112 px

    def __init__(self, layers: tuple[int, int, int, int], num_features: int = 512) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=BN_EPS)
        self.prelu = nn.PReLU(64)
        inplanes = 64
        for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            stage_blocks = [IBasicBlock(inplanes, planes, stride=2)]
            stage_blocks += [IBasicBlock(planes, planes) for _ in range(blocks - 1)]
            self.add_module(f"layer{stage}", nn.Sequential(*stage_blocks))
            inplanes = planes
        self.bn2 = nn.BatchNorm2d(512, eps=BN_EPS)
        self.fc = nn.Linear(512 * self.spatial * self.spatial, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (112, 112):
            raise ValueError(f"IResNet expects 112x112 input, got {tuple(x.shape[-2:])}")
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)
        return self.features(self.fc(x))


def iresnet(arch: str) -> IResNet:
    """A randomly initialised ``iresnet50`` or ``iresnet100`` (fill it with :func:`load_state_dict_strict`)."""
    if arch not in IRESNET_LAYERS:
        raise ValueError(f"unknown iresnet '{arch}'; choose one of {sorted(IRESNET_LAYERS)}")
    return IResNet(IRESNET_LAYERS[arch])


class ArcFaceEncoder(IdentityEncoder):
    """Frozen ArcFace identity encoder.

    Input: (N, 3, S, S) RGB in [-1, 1], aligned on the ArcFace template scaled to S (any S).
    Output: (N, 512) unit vectors. Inside: resize to 112 (antialiased when shrinking), then the
    iresnet on [-1, 1] RGB as arcface_torch expects. Differentiable w.r.t. the input.
    """

    embedding_dim = 512
    input_size = 112

    def __init__(self, net: IResNet) -> None:
        super().__init__()
        self.net = net
        self.freeze()

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) RGB [-1, 1] -> (N, 3, 112, 112) RGB [-1, 1] (arcface_torch's input)."""
        check_image_batch(x, type(self).__name__)
        return resize_aligned(x, self.input_size)

    def network(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 112, 112) -> (N, 512) raw (unnormalised) features."""
        return self.net(x)


def _layers_in(state_dict: dict[str, torch.Tensor]) -> tuple[int, ...]:
    """Blocks per stage found in an iresnet state dict (e.g. (3, 4, 14, 3)); empty if not an iresnet."""
    counts = {}
    for key in state_dict:
        m = re.match(r"layer(\d)\.(\d+)\.", key)
        if m:
            stage, block = int(m.group(1)), int(m.group(2))
            counts[stage] = max(counts.get(stage, 0), block + 1)
    return tuple(counts[s] for s in sorted(counts))


def _mismatch_hint(state_dict: dict[str, torch.Tensor], arch: str) -> str:
    layers = _layers_in(state_dict)
    other = next((name for name, ls in IRESNET_LAYERS.items() if ls == layers), None)
    if other and other != arch:
        return f"The file holds an {other}: use the identity encoder 'arcface_{other}' instead."
    if layers:
        return (f"The file holds an iresnet with blocks per stage {list(layers)}, not {list(IRESNET_LAYERS[arch])}: "
                "is this a checkpoint of a different backbone?")
    return ("Is this a checkpoint of a different backbone? arcface_torch's backbone.pth (iresnet, 512-d) "
            "is expected.")


def _build(arch: str, weights: str | Path | None) -> ArcFaceEncoder:
    name = f"arcface_{arch}"
    if weights is None:
        raise FaceSwapError(
            f"The identity encoder '{name}' needs weights=<path to backbone.pth>: these standard ArcFace "
            "weights are user-supplied (insightface arcface_torch model zoo, or GHOST's "
            "arcface_model/backbone.pth) and cannot be downloaded here. Use 'sface', the offline default, "
            "if you have none."
        )
    state_dict = load_checkpoint_file(weights)
    with torch.device("meta"):  # skip the random init: the strict load overwrites every tensor
        net = iresnet(arch)
    net.to_empty(device="cpu")
    load_state_dict_strict(net, state_dict, f"ArcFace {arch} weights '{weights}'",
                           hint=_mismatch_hint(state_dict, arch))
    return ArcFaceEncoder(net)


@register_identity("arcface_iresnet50")
def arcface_iresnet50(weights: str | Path | None = None) -> ArcFaceEncoder:
    """Frozen arcface_torch iresnet50 (512-d) from a user ``backbone.pth`` (e.g. ms1mv3_arcface_r50)."""
    return _build("iresnet50", weights)


@register_identity("arcface_iresnet100")
def arcface_iresnet100(weights: str | Path | None = None) -> ArcFaceEncoder:
    """Frozen arcface_torch iresnet100 (512-d) from a user ``backbone.pth`` — GHOST's identity network."""
    return _build("iresnet100", weights)
