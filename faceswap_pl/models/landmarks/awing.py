"""AdaptiveWing FAN (4 stacked hourglasses, 98 WFLW points + 1 boundary map) from a user ``WFLW_4HG.pth``.

The network follows the layout of the AdaptiveWingLoss repository's ``FAN(4, ..., 98)`` so that its
state-dict keys and shapes equal ``tests/data/ghost_state_dict_keys.json`` (entry ``FAN_4_98``):
a CoordConv stem at 256 px, three ConvBlocks down to 64 px, then four hourglasses (depth 4), each
followed by heads that predict 99 heatmaps (98 landmarks + the facial-boundary map) at 64x64. From the
second stack on, the CoordConv in front of each hourglass also sees where the previous stack's
boundary map exceeds 0.05.

Network input: (N, 3, 256, 256) RGB in [0, 1]. GHOST's eye loss compares the last stack's heatmap
channels 96 and 97 (the pupils) of swap and target; :meth:`AWingLandmarks.heatmaps` returns them and
:meth:`AWingLandmarks.forward` turns them into differentiable coordinates with :func:`soft_argmax_2d`.
Like GHOST, the adapter feeds the aligned crops as they are; AWing was trained on looser WFLW box
crops, so absolute points may be biased, while the eye loss only compares two crops framed alike.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from faceswap_pl.alignment import resize_aligned
from faceswap_pl.errors import FaceSwapError
from faceswap_pl.models.frozen import check_image_batch
from faceswap_pl.models.importers.checkpoint import load_checkpoint_file, load_state_dict_strict
from faceswap_pl.models.landmarks.base import LandmarkModel, register_landmarks

NUM_LANDMARKS = 98  # WFLW; channel 98 of every stack output is the boundary map
NUM_STACKS = 4
INPUT_SIZE = 256
HEATMAP_SIZE = 64
# A boundary-map value above this marks a pixel as "on the face boundary" for the next stack (AWing's).
BOUNDARY_THRESHOLD = 0.05
# Soft-argmax sharpness, applied to heatmaps rescaled to a peak-to-floor range of 1. Around a Gaussian
# peak of width sigma the softmax weights form a Gaussian of width sigma / sqrt(beta) (~0.22 sigma
# here): close to the arg-max, yet a far background of 4096 pixels at the floor weighs < 1e-4 of it.
SOFT_ARGMAX_BETA = 20.0


class AddCoords(nn.Module):
    """Append coordinate channels, as AWing's ``AddCoordsTh`` (``with_r=True``) does.

    Channels appended to (N, C, S, S): the row coordinate, the column coordinate (both in [-1, 1];
    AWing calls them "xx" and "yy" but its xx varies down the rows), the radius normalised to max 1,
    and with ``with_boundary`` the row and column coordinates masked to where the boundary heatmap
    exceeds :data:`BOUNDARY_THRESHOLD` (0 elsewhere). Output: (N, C + 3 [+ 2], S, S).
    """

    def __init__(self, size: int, with_boundary: bool) -> None:
        super().__init__()
        self.size = size
        self.with_boundary = with_boundary

    def coordinates(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(1, 3, S, S): row, column and radius channels (built per call: cheap, and no state to keep)."""
        grid = torch.arange(self.size, device=device, dtype=torch.float32) / (self.size - 1) * 2 - 1
        rows = grid.view(-1, 1).expand(self.size, self.size)
        cols = grid.view(1, -1).expand(self.size, self.size)
        radius = torch.sqrt(rows**2 + cols**2)
        return torch.stack([rows, cols, radius / radius.max()])[None].to(dtype)

    def forward(self, x: torch.Tensor, heatmap: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"coordinate channels are built for {self.size}x{self.size}, got {tuple(x.shape[-2:])}")
        coords = self.coordinates(x.device, x.dtype).expand(x.shape[0], -1, -1, -1)
        parts = [x, coords]
        if self.with_boundary:
            if heatmap is None:
                raise ValueError("this CoordConv needs the previous stack's heatmaps (boundary channel)")
            on_boundary = heatmap[:, -1:] > BOUNDARY_THRESHOLD
            parts.append(torch.where(on_boundary, coords[:, :2], torch.zeros_like(coords[:, :2])))
        return torch.cat(parts, dim=1)


class CoordConv(nn.Module):
    """:class:`AddCoords` followed by a conv whose input has the 3 (or 5) extra channels."""

    def __init__(self, size: int, in_channels: int, out_channels: int, with_boundary: bool, **conv_kwargs) -> None:
        super().__init__()
        self.addcoords = AddCoords(size, with_boundary)
        self.conv = nn.Conv2d(in_channels + 3 + (2 if with_boundary else 0), out_channels, **conv_kwargs)

    def forward(self, x: torch.Tensor, heatmap: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(self.addcoords(x, heatmap))


class ConvBlock(nn.Module):
    """FAN's multi-scale residual block: (N, c_in, H, W) -> (N, c_out, H, W).

    Three BN-ReLU-conv3x3 steps with c_out/2, c_out/4, c_out/4 channels, concatenated (= c_out), plus
    the input (through BN-ReLU-conv1x1 when the channel count changes).
    """

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        half, quarter = out_planes // 2, out_planes // 4
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, quarter, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = nn.Conv2d(quarter, quarter, 3, padding=1, bias=False)
        self.downsample: nn.Module | None = None
        if in_planes != out_planes:
            self.downsample = nn.Sequential(
                nn.BatchNorm2d(in_planes), nn.ReLU(), nn.Conv2d(in_planes, out_planes, 1, bias=False)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), dim=1) + shortcut


class HourGlass(nn.Module):
    """CoordConv (1x1, 256 channels) then a depth-``depth`` hourglass of ConvBlocks at 64 px.

    Level ``l``: upper branch ``b1_l``; lower branch avg-pool /2 -> ``b2_l`` -> level ``l-1`` (or
    ``b2_plus_1`` at the bottom) -> ``b3_l`` -> nearest x2; the two branches are summed.
    Shape: (N, 256, 64, 64) -> (N, 256, 64, 64).
    """

    def __init__(self, depth: int, first: bool) -> None:
        super().__init__()
        self.depth = depth
        self.coordconv = CoordConv(HEATMAP_SIZE, 256, 256, with_boundary=not first, kernel_size=1)
        self._add_level(depth)

    def _add_level(self, level: int) -> None:
        # registration order = AWing's, so state-dict keys come out in the same order
        self.add_module(f"b1_{level}", ConvBlock(256, 256))
        self.add_module(f"b2_{level}", ConvBlock(256, 256))
        if level > 1:
            self._add_level(level - 1)
        else:
            self.add_module(f"b2_plus_{level}", ConvBlock(256, 256))
        self.add_module(f"b3_{level}", ConvBlock(256, 256))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        upper = self._modules[f"b1_{level}"](x)
        lower = self._modules[f"b2_{level}"](F.avg_pool2d(x, 2, stride=2))
        lower = self._level(level - 1, lower) if level > 1 else self._modules[f"b2_plus_{level}"](lower)
        lower = self._modules[f"b3_{level}"](lower)
        return upper + F.interpolate(lower, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor, heatmap: torch.Tensor | None) -> torch.Tensor:
        return self._level(self.depth, self.coordconv(x, heatmap))


class FAN(nn.Module):
    """AdaptiveWing FAN: (N, 3, 256, 256) RGB in [0, 1] -> list of ``num_stacks`` (N, K + 1, 64, 64).

    Args:
        num_stacks: hourglasses (4 for ``WFLW_4HG.pth``).
        num_landmarks: K (98 for WFLW); each output has one more channel, the boundary map.
        end_relu: ReLU on every stack's output (which also feeds the next stack). GHOST builds its
            eye model with ``end_relu="False"`` — a truthy string — so GHOST runs with it on.
    """

    def __init__(self, num_stacks: int = NUM_STACKS, num_landmarks: int = NUM_LANDMARKS, end_relu: bool = True) -> None:
        super().__init__()
        self.num_stacks = num_stacks
        self.end_relu = end_relu
        self.conv1 = CoordConv(INPUT_SIZE, 3, 64, with_boundary=False, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, 256)
        for i in range(num_stacks):
            self.add_module(f"m{i}", HourGlass(depth=4, first=i == 0))
            self.add_module(f"top_m_{i}", ConvBlock(256, 256))
            self.add_module(f"conv_last{i}", nn.Conv2d(256, 256, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(256))
            self.add_module(f"l{i}", nn.Conv2d(256, num_landmarks + 1, 1))
            if i < num_stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(256, 256, 1))
                self.add_module(f"al{i}", nn.Conv2d(num_landmarks + 1, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))  # 256 -> 128
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)  # -> 64
        features = self.conv4(self.conv3(x))
        outputs: list[torch.Tensor] = []
        heatmap = None
        for i in range(self.num_stacks):
            y = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](features, heatmap))
            y = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](y)))
            heatmap = self._modules[f"l{i}"](y)
            if self.end_relu:
                heatmap = F.relu(heatmap)
            outputs.append(heatmap)
            if i < self.num_stacks - 1:
                features = features + self._modules[f"bl{i}"](y) + self._modules[f"al{i}"](heatmap)
        return outputs


def soft_argmax_2d(heatmaps: torch.Tensor, beta: float = SOFT_ARGMAX_BETA) -> torch.Tensor:
    """Differentiable peak location of each heatmap.

    Each map is rescaled to a peak-to-floor range of 1 (the scale is a constant for autograd), turned
    into weights by ``softmax(beta * map)`` and the expected pixel centre is returned. Pixel ``j`` of
    ``W`` has its centre at ``(j + 0.5) / W`` (AWing's decoding: index + 0.5 heatmap pixels).

    Args:
        heatmaps: (N, K, H, W).
        beta: sharpness (see :data:`SOFT_ARGMAX_BETA`); larger is closer to a hard arg-max.
    Returns:
        (N, K, 2) as (x, y) in [0, 1] (x along W, y along H).

    Example:
        >>> h = torch.zeros(1, 1, 64, 64); h[0, 0, 10, 20] = 1.0
        >>> (soft_argmax_2d(h) * 64).squeeze().tolist()   # the centre of pixel (20, 10)
        [20.50..., 10.50...]
    """
    if heatmaps.ndim != 4:
        raise ValueError(f"soft_argmax_2d expects (N, K, H, W), got {tuple(heatmaps.shape)}")
    n, k, h, w = heatmaps.shape
    flat = heatmaps.flatten(2)
    spread = (flat.amax(-1, keepdim=True) - flat.amin(-1, keepdim=True)).detach().clamp_min(1e-6)
    weights = torch.softmax(beta * flat / spread, dim=-1).view(n, k, h, w)
    xs = (torch.arange(w, device=heatmaps.device, dtype=heatmaps.dtype) + 0.5) / w
    ys = (torch.arange(h, device=heatmaps.device, dtype=heatmaps.dtype) + 0.5) / h
    x = (weights.sum(-2) * xs).sum(-1)
    y = (weights.sum(-1) * ys).sum(-1)
    return torch.stack([x, y], dim=-1)


class AWingLandmarks(LandmarkModel):
    """Frozen AWing FAN behind the landmark interface.

    Input: (N, 3, S, S) RGB in [-1, 1] aligned crops (any S; resized to 256, mapped to [0, 1]).
    ``forward`` -> (N, 98, 2) WFLW points (x, y) in [0, 1] crop coordinates, by soft-argmax on the
    last stack's heatmaps; ``eye_indices`` are the pupils 96 (left) and 97 (right).
    """

    num_points = NUM_LANDMARKS
    eye_indices = (96, 97)
    input_size = INPUT_SIZE

    def __init__(self, fan: FAN, beta: float = SOFT_ARGMAX_BETA) -> None:
        super().__init__()
        self.fan = fan
        self.beta = beta
        self.freeze()

    def heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) in [-1, 1] -> (N, 98, 64, 64): last stack's landmark heatmaps (boundary dropped)."""
        check_image_batch(x, type(self).__name__)
        # GHOST's detect_landmarks maps [-1, 1] to [0, 1] as std * x + mean (0.5 * x + 0.5): rounded as it does
        return self.fan(resize_aligned(0.5 * x + 0.5, INPUT_SIZE))[-1][:, :NUM_LANDMARKS]

    def eye_features(self, x: torch.Tensor) -> torch.Tensor:
        """GHOST's eye-loss input: last-stack heatmaps of the two pupils (96, 97), (N, 2, 64, 64)."""
        return self.heatmaps(x)[:, list(self.eye_indices)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) in [-1, 1] -> (N, 98, 2) in [0, 1]. Differentiable w.r.t. ``x``."""
        return soft_argmax_2d(self.heatmaps(x), self.beta)


def _mismatch_hint(state_dict: dict[str, torch.Tensor]) -> str:
    heads = {int(m.group(1)): v for k, v in state_dict.items() if (m := re.fullmatch(r"l(\d+)\.weight", k))}
    if heads:
        points = next(iter(heads.values())).shape[0] - 1
        if len(heads) != NUM_STACKS or points != NUM_LANDMARKS:
            return (f"The file holds a FAN with {len(heads)} stacks and {points} landmarks; 'awing_fan' needs "
                    f"the {NUM_STACKS}-stack, {NUM_LANDMARKS}-point WFLW model (WFLW_4HG.pth).")
    return "Is this a checkpoint of a different model? AdaptiveWing's WFLW_4HG.pth is expected."


@register_landmarks("awing_fan")
def awing_fan(weights: str | Path | None = None, end_relu: bool = True,
              beta: float = SOFT_ARGMAX_BETA) -> AWingLandmarks:
    """Frozen AdaptiveWing FAN (4 hourglasses, 98 WFLW points) from a user ``WFLW_4HG.pth``.

    Args:
        weights: path of the checkpoint (a plain state dict or ``{"state_dict": ...}``); required.
        end_relu: ReLU on stack outputs; True reproduces GHOST (see :class:`FAN`), False the AWing repo's default.
        beta: soft-argmax sharpness for :meth:`AWingLandmarks.forward`.
    """
    if weights is None:
        raise FaceSwapError(
            "The landmark model 'awing_fan' needs weights=<path to WFLW_4HG.pth>: these standard AdaptiveWing "
            "weights are user-supplied (AdaptiveWingLoss repository release, or GHOST's download_models.sh) "
            "and cannot be downloaded here. Use 'mediapipe_iris', the offline default, if you have none."
        )
    state_dict = load_checkpoint_file(weights)
    with torch.device("meta"):  # skip the random init: the strict load overwrites every tensor
        fan = FAN(end_relu=end_relu)
    fan.to_empty(device="cpu")
    load_state_dict_strict(fan, state_dict, f"AWing FAN weights '{weights}'", hint=_mismatch_hint(state_dict))
    return AWingLandmarks(fan, beta=beta)
