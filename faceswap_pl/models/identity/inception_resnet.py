"""FaceNet's Inception-ResNet-v1 as a native torch module, layer for layer as the Keras h5 of the zoo.

Keras layer names are kept (``keras_name``) so the converter can map the h5 weights:

* every ``Conv2D`` (no bias) is followed by ``BatchNormalization(epsilon=1e-3, center=True,
  scale=False)`` and a ReLU; ``same`` padding only occurs at stride 1 with odd kernels, so it is the
  symmetric padding ``k // 2``;
* residual blocks add ``scale * Conv2d_1x1(concat(branches))`` (1x1 conv with bias) to their input,
  with ``scale`` 0.17 (5 x Block35), 0.1 (10 x Block17), 0.2 (5 x Block8) and 1.0 for the last
  Block8, which has no ReLU; branches are concatenated in Branch_0, Branch_1, ... order;
* global average pooling, dropout (identity at inference), ``Dense(128, use_bias=False)`` and a final
  ``BatchNormalization(scale=False)`` ("Bottleneck"); the embedding is that BN output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Keras BatchNormalization epsilon used by every BN layer of the h5 model.
BN_EPS = 1e-3


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
