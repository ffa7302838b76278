"""Multi-level attribute encoders of AEI-Net: one interface (:mod:`.base`), one registry, one module per family.

Every encoder takes target faces ``(N, 3, S, S)`` RGB in [-1, 1] and returns ``log2(S)`` attribute maps,
coarsest (2x2) first; the AAD generator only reads :attr:`~.base.AttributeEncoder.channels`.

Names (``create_attribute_encoder(name, image_size=256, width=1.0, **kwargs)``):
    ``unet``            GHOST's default (:mod:`.unet`): stride-2 4x4 convs (BatchNorm, LeakyReLU 0.1) down to
                        2x2, 4x4 transposed convs up with concatenated skips, a final bilinear x2.
                        256 px: channels 1024, 2048, 1024, 512, 256, 128, 64, 64.
    ``linknet``         the same with skips added instead of concatenated:
                        1024, 1024, 512, 256, 128, 64, 32, 32.
    ``resnet``          GHOST's Bottleneck ResNet (:mod:`.resnet`, two blocks per stage), the unet's channels.
    ``timm:<model>``    any timm ``features_only`` CNN (``pretrained=False`` unless passed) plus a
                        light top-down decoder (:mod:`.timm`).

At ``width=1`` and 256 px the first three have GHOST's exact layout, key names and initialisation,
so GHOST ``G_*.pth`` encoder weights load into them (see :class:`~faceswap_pl.models.aei_net.AEINet`).
A new backbone is a module here that subclasses :class:`~.base.AttributeEncoder` and registers its factory
with ``@register_attribute_encoder("name")``, plus one import line below.

Example:
    >>> import torch
    >>> enc = create_attribute_encoder("unet", image_size=64, width=0.125)
    >>> [tuple(z.shape) for z in enc(torch.zeros(1, 3, 64, 64))][:2]
    [(1, 128, 2, 2), (1, 256, 4, 4)]
    >>> attribute_encoder_names()
    ['linknet', 'resnet', 'unet', 'timm:<model_name>']
"""

from __future__ import annotations

from faceswap_pl.models.attributes import resnet, timm, unet  # noqa: F401 (registers the encoders)
from faceswap_pl.models.attributes.base import ATTRIBUTE_ENCODERS, AttributeEncoder, register_attribute_encoder

__all__ = ["ATTRIBUTE_ENCODERS", "AttributeEncoder", "attribute_encoder_names", "create_attribute_encoder",
           "register_attribute_encoder"]


def attribute_encoder_names(pattern: str = "*") -> list[str]:
    """The registered names matching ``pattern`` (shell-style), ``timm:<model_name>`` included."""
    return ATTRIBUTE_ENCODERS.names(pattern)


def create_attribute_encoder(name: str, image_size: int = 256, width: float = 1.0, **kwargs) -> AttributeEncoder:
    """Build an attribute encoder by registry name (see the package docstring).

    Args:
        name: ``unet``, ``linknet``, ``resnet`` or ``timm:<model_name>``.
        image_size: S, one of 64, 128, 256, 512; the encoder returns log2(S) levels.
        width: channel multiplier (1.0 = GHOST); for timm encoders it scales the decoder only.
        **kwargs: passed to the factory; for timm, to ``timm.create_model`` (e.g. ``pretrained=True``).

    Raises:
        UnknownNameError: unknown name (the message lists the valid ones).
        ModelOptionError: unsupported image size or width.
    """
    return ATTRIBUTE_ENCODERS.create(name, image_size=image_size, width=width, **kwargs)
