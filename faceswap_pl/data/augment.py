"""Per-view augmentation with albumentations, configured from the YAML config.

A pipeline is a list of ``{name: <albumentations class>, <its parameters>...}`` dicts, e.g.::

    augment:
      - {name: ColorJitter, brightness: 0.2, contrast: 0.2, saturation: 0.2, hue: 0.01, p: 1.0}
      - {name: HorizontalFlip, p: 0.5}
      - {name: OneOf, transforms: [{name: GaussianBlur}, {name: GaussNoise}], p: 0.2}

``None`` means GHOST's augmentation (:data:`GHOST_AUGMENT`: ``ColorJitter(0.2, 0.2, 0.2, 0.01)`` on
every view, as torchvision applies it), ``[]`` means none. Parameters not given keep albumentations'
defaults (note its ``p=0.5`` for most transforms). Each view (source and target) is augmented
independently. Unknown names raise one sentence listing the valid ones.

Images stay ``uint8`` RGB HWC through the pipeline (cheap to pass between processes);
:func:`to_model_range` makes the ``float`` CHW tensors in [-1, 1] that models take.
"""

from __future__ import annotations

import difflib
import inspect
import random
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.core.composition import BaseCompose
from albumentations.core.transforms_interface import BasicTransform, Transform3D

from faceswap_pl.errors import FaceSwapError

GHOST_AUGMENT: list[dict[str, Any]] = [
    {"name": "ColorJitter", "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.01, "p": 1.0},
]
_COMPOSITIONS = {"OneOf": A.OneOf, "SomeOf": A.SomeOf, "Sequential": A.Sequential}
_NOT_USABLE = {"BasicTransform", "DualTransform", "ImageOnlyTransform", "Transform3D", "ToTensorV2", "ToTensor3D",
               "Normalize", "ToFloat", "FromFloat"}

AugmentSpec = Sequence[Mapping[str, Any] | BasicTransform | BaseCompose] | None


class AugmentConfigError(FaceSwapError, ValueError):
    """An augmentation entry names an unknown transform or gives it invalid parameters."""


@cache
def transform_names() -> tuple[str, ...]:
    """Names accepted in an augmentation entry: albumentations' 2D transforms and OneOf/SomeOf/Sequential."""
    names = set(_COMPOSITIONS)
    for name in dir(A):
        obj = getattr(A, name)
        if (inspect.isclass(obj) and issubclass(obj, BasicTransform) and not issubclass(obj, Transform3D)
                and not inspect.isabstract(obj) and name not in _NOT_USABLE):
            names.add(name)
    return tuple(sorted(names))


def _build(entry: Any, where: str) -> BasicTransform | BaseCompose:
    if isinstance(entry, (BasicTransform, BaseCompose)):
        return entry
    if not isinstance(entry, Mapping) or "name" not in entry:
        raise AugmentConfigError(f"Augmentation entry {where} is {entry!r}; write it as {{name: <transform>, "
                                 f"<parameters>...}}, e.g. {{name: ColorJitter, brightness: 0.2}}.")
    params = dict(entry)
    name = params.pop("name")
    if name not in transform_names():
        close = difflib.get_close_matches(str(name), transform_names(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise AugmentConfigError(f"Unknown augmentation {name!r} in entry {where}{hint}; valid names: "
                                 f"{', '.join(transform_names())}.")
    try:
        if name in _COMPOSITIONS:
            children = params.pop("transforms", None)
            if not isinstance(children, Sequence) or not children:
                raise AugmentConfigError(f"Augmentation {name} in entry {where} needs a non-empty 'transforms' list.")
            built = [_build(child, f"{where}.{i}") for i, child in enumerate(children)]
            return _COMPOSITIONS[name](built, **params)
        return getattr(A, name)(**params)
    except AugmentConfigError:
        raise
    except Exception as error:  # pydantic ValidationError, TypeError for unknown keywords, ...
        reason = " ".join(str(error).split())
        raise AugmentConfigError(f"Augmentation {name} in entry {where} has invalid parameters {params} "
                                 f"({reason[:300]}); see albumentations' documentation of {name}.") from None


def build_augment(spec: AugmentSpec = None) -> A.Compose | None:
    """An albumentations ``Compose`` for a pipeline spec (module docstring); None for ``[]``."""
    entries = GHOST_AUGMENT if spec is None else spec
    if isinstance(entries, (str, Mapping)) or not isinstance(entries, Sequence):
        raise AugmentConfigError(f"data.augment must be a list of {{name: ..., ...}} entries, got {spec!r}.")
    if not entries:
        return None
    return A.Compose([_build(entry, str(i)) for i, entry in enumerate(entries)], p=1.0)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    if height == size and width == size:
        return image
    shrink = height > size or width > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class ViewTransform:
    """One view: resize to ``image_size`` (if the shard's crop size differs), then the augmentation.

    Call it on an (H, W, 3) uint8 RGB crop; it returns (image_size, image_size, 3) uint8 RGB.
    """

    def __init__(self, image_size: int, augment: AugmentSpec = None, enabled: bool = True) -> None:
        self.image_size = image_size
        self.augment = build_augment(augment) if enabled else None

    def seed(self, rng: np.random.Generator) -> None:
        """Draw the augmentation's random state from ``rng`` (deterministic per rank and worker)."""
        if self.augment is not None:
            value = int(rng.integers(1 << 62))
            self.augment.set_random_state(np.random.default_rng(value), random.Random(value))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = _resize(image, self.image_size)
        if self.augment is not None:
            image = self.augment(image=image)["image"]
            if image.dtype != np.uint8:
                raise AugmentConfigError(f"The augmentation pipeline returned {image.dtype} images; keep it to "
                                         f"uint8 transforms (the loader scales to [-1, 1] itself).")
            image = _resize(image, self.image_size)
        return image


def to_model_range(images: torch.Tensor, pin_memory: bool = False) -> torch.Tensor:
    """uint8 RGB CHW/NCHW (0..255) -> float32 in [-1, 1], same shape.

    One fused pass (``cv2.addWeighted``: 2-3x faster than three torch element-wise ops, which are
    memory-bound here), written straight into pinned memory when ``pin_memory`` so that the copy to
    the GPU can be non-blocking.
    """
    out = torch.empty(images.shape, dtype=torch.float32, pin_memory=pin_memory)
    if images.numel() == 0:
        return out
    source = images.contiguous().numpy().reshape(-1, images.shape[-1])
    cv2.addWeighted(source, 1.0 / 127.5, source, 0.0, -1.0, dst=out.numpy().reshape(source.shape), dtype=cv2.CV_32F)
    return out
