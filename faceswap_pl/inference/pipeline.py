"""The swap pipeline: detect -> choose faces -> track and smooth -> align -> batched generator ->
optional restoration -> landmark mask -> inverse-affine paste-back (on the device).

:class:`~faceswap_pl.inference.generators.SwapModel` loads a generator (a training checkpoint, an
export folder on torch or onnxruntime, or GHOST's released ``G_*.pth``) with its identity encoder and
the conventions its faces are cut with (:class:`~faceswap_pl.inference.generators.FaceConventions`).
:class:`FaceSwapper` holds the source identity and the options and turns frames into swapped frames: :meth:`FaceSwapper.swap_image` for one
image, :meth:`FaceSwapper.swap_frames` for a stream (frames come out in order, ``smooth`` frames
late). Frames where no face is chosen are returned untouched (the same array).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import torch

from faceswap_pl.alignment import align_face, alignment_matrix, invert_affine, warp_affine
from faceswap_pl.errors import FaceSwapError
from faceswap_pl.inference.generators import SwapModel
from faceswap_pl.inference.masks import DEFAULT_RULE, MaskRule, adaptive_rule, full_mask, hull_mask, jaw_offset
from faceswap_pl.inference.options import DEFAULT_THRESHOLD, MASK_MODES
from faceswap_pl.inference.smoothing import KeypointSmoother, TrackedFace
from faceswap_pl.models.detectors import Face, FaceDetector, create_detector
from faceswap_pl.models.detectors.tracks import DEFAULT_MAX_JUMP
from faceswap_pl.models.identity import create_identity_encoder
from faceswap_pl.models.landmarks.mediapipe import MediaPipeMesh


class NoFaceError(FaceSwapError):
    """No face was found where one is needed."""


def to_tensor(images: list[np.ndarray] | np.ndarray, device) -> torch.Tensor:
    """RGB uint8 (N, H, W, 3) -> (N, 3, H, W) float in [-1, 1] on ``device``."""
    array = np.stack(images) if isinstance(images, list) else images
    return torch.from_numpy(np.ascontiguousarray(array)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0


# ---------------------------------------------------------------------------------------------- the swapper

@dataclass
class _Pending:
    """A frame waiting for its faces' swaps."""

    frame: np.ndarray
    faces: list[TrackedFace]


@dataclass
class SwapStats:
    frames: int = 0
    frames_with_faces: int = 0
    faces: int = 0
    tracks: set = field(default_factory=set)


class FaceSwapper:
    """Swap the source identity into frames.

    Args:
        model: the :class:`SwapModel`.
        source: RGB uint8 image holding the source face (the largest face is used).
        detector: a :class:`FaceDetector` or a detector name (``yunet``, ``insightface:<dir>``).
        reference: RGB image of the person to replace (its largest face); in each frame only the face most
            similar to it by the evaluation recognizer is swapped, when the cosine reaches ``threshold``.
            Without it: the largest face, or all faces with ``all_faces``.
        mask: ``adaptive`` (GHOST's rule, once per track), ``hull`` (fixed erosion and blur) or ``none``.
        smooth: keypoint smoothing radius in frames (0: off).
        jump: keypoint move (fraction of the eye distance) between frames that starts a new track.
        restorer: optional module run on the swapped crops, (N,3,S,S) -> (N,3,S*k,S*k) in [-1, 1] (k = 1 for a
            restoration network, 4 for Real-ESRGAN); used only on faces larger in the frame than the crop when
            ``restore_large_only``.
        batch_size: crops per generator call (also the frames processed together).
        device: torch device for the generator, masks networks and paste-back.
    """

    def __init__(self, model: SwapModel, source: np.ndarray, *, detector: FaceDetector | str = "yunet",
                 reference: np.ndarray | None = None, threshold: float = DEFAULT_THRESHOLD, all_faces: bool = False,
                 mask: str = "adaptive", smooth: int = 2, jump: float = DEFAULT_MAX_JUMP, restorer=None,
                 restore_large_only: bool = True, batch_size: int = 8, device: str | torch.device = "cpu",
                 recognizer: str = "facenet") -> None:
        if mask not in MASK_MODES:
            raise FaceSwapError(f"Unknown mask {mask!r}; choose one of {', '.join(MASK_MODES)}.")
        if batch_size < 1:
            raise FaceSwapError(f"batch size must be at least 1, got {batch_size}.")
        self.model = model
        self.device = torch.device(device)
        self.detector = create_detector(detector) if isinstance(detector, str) else detector
        self.mask_mode, self.smooth, self.jump = mask, int(smooth), float(jump)
        self.all_faces, self.threshold = all_faces, float(threshold)
        self.batch_size = int(batch_size)
        self.restorer, self.restore_large_only = restorer, restore_large_only
        self.mesh = MediaPipeMesh().to(self.device) if mask != "none" else None
        face = self._largest(source, "source image")
        crop, _ = align_face(source, face.keypoints, model.crop_size, model.conventions.template)
        self.source_crop = crop
        self.embedding = model.embed(to_tensor([crop], self.device))
        self.recognizer, self.reference_embedding = None, None
        if reference is not None:
            self.recognizer = create_identity_encoder(recognizer).to(self.device)
            ref = self._largest(reference, "reference image (--target-face)")
            self.reference_embedding = self._recognize(reference, [ref])
        self._rules: dict[int, MaskRule] = {}  # adaptive mask rule per track of the current image / video
        self._stream = 0
        self.stats = SwapStats()

    # ------------------------------------------------------------------ choosing faces
    def _largest(self, image: np.ndarray, what: str) -> Face:
        faces = self.detector(image)
        if not faces:
            raise NoFaceError(f"No face was found in the {what}; use a picture where one face is clearly visible "
                              f"(frontal, at least about 60 pixels wide).")
        return max(faces, key=lambda f: f.area)

    @torch.no_grad()
    def _recognize(self, image: np.ndarray, faces: list[Face]) -> torch.Tensor:
        crops = [align_face(image, f.keypoints, 112)[0] for f in faces]
        return torch.nn.functional.normalize(self.recognizer(to_tensor(crops, self.device)).float(), dim=-1)

    def choose(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        """The faces of a frame to swap."""
        if not faces:
            return []
        if self.reference_embedding is not None:
            # the reference person appears once in a frame: its best match, if close enough
            similarity = (self._recognize(image, faces) @ self.reference_embedding[0]).tolist()
            best = int(np.argmax(similarity))
            return [faces[best]] if similarity[best] >= self.threshold else []
        if self.all_faces:
            return list(faces)
        return [max(faces, key=lambda f: f.area)]

    # ------------------------------------------------------------------ the stream
    def _new_stream(self) -> None:
        """Track ids restart with every image or video: forget the mask rules of the previous one."""
        self._rules = {}
        self._stream += 1

    def swap_image(self, image: np.ndarray) -> np.ndarray:
        """One image (no smoothing); the input is returned unchanged when no face is chosen."""
        self._new_stream()
        smoother = KeypointSmoother(radius=0, jump=self.jump)
        ready = smoother.push(image, self.choose(image, self.detector(image)))
        (output,) = list(self._swap_pending([_Pending(frame, faces) for frame, faces in ready]))
        return output

    def swap_frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Swapped frames in input order; memory holds ``smooth + batch_size`` frames."""
        self._new_stream()
        smoother = KeypointSmoother(radius=self.smooth, jump=self.jump)
        pending: list[_Pending] = []
        for frame in frames:
            for ready_frame, faces in smoother.push(frame, self.choose(frame, self.detector(frame))):
                pending.append(_Pending(ready_frame, faces))
            if len(pending) >= self.batch_size:
                yield from self._swap_pending(pending)
                pending = []
        pending += [_Pending(frame, faces) for frame, faces in smoother.flush()]
        yield from self._swap_pending(pending)

    # ------------------------------------------------------------------ the work
    @torch.no_grad()
    def _swap_pending(self, pending: list[_Pending]) -> Iterator[np.ndarray]:
        size, template = self.model.crop_size, self.model.conventions.template
        jobs = [(i, tracked) for i, p in enumerate(pending) for tracked in p.faces]
        self.stats.frames += len(pending)
        self.stats.frames_with_faces += sum(bool(p.faces) for p in pending)
        self.stats.faces += len(jobs)
        if not jobs:
            yield from (p.frame for p in pending)
            return
        matrices = [alignment_matrix(t.keypoints, size, template) for _, t in jobs]
        crops = [align_face(pending[i].frame, t.keypoints, size, template)[0] for i, t in jobs]
        targets = to_tensor(crops, self.device)
        swaps = torch.cat([self.model.swap(targets[k:k + self.batch_size],
                                           self.embedding.expand(len(targets[k:k + self.batch_size]), -1))
                           for k in range(0, len(targets), self.batch_size)])
        masks = self._masks(jobs, targets, swaps)
        frames = {i: torch.from_numpy(pending[i].frame).to(self.device).permute(2, 0, 1).float()
                  for i in sorted({i for i, _ in jobs})}
        for k, (i, tracked) in enumerate(jobs):
            self.stats.tracks.add((self._stream, tracked.track))
            swap, mask, matrix = swaps[k], masks[k], matrices[k]
            if self.restorer is not None and (not self.restore_large_only or _face_scale(matrix) < 1.0):
                restored = self.restorer(swap[None]).clamp(-1, 1)[0]
                # paste at the resolution the face has in the frame (never above the restorer's), resized with
                # anti-aliasing, so the inverse warp neither magnifies nor aliases
                side = min(restored.shape[-1], max(size, int(np.ceil(size / _face_scale(matrix)))))
                if side != restored.shape[-1]:
                    restored = torch.nn.functional.interpolate(restored[None], size=(side, side), mode="bilinear",
                                                               antialias=True, align_corners=False)[0]
                if side != size:
                    mask = torch.nn.functional.interpolate(mask[None], size=(side, side), mode="bilinear",
                                                           align_corners=False)[0]
                    matrix = scale_crop_matrix(matrix, side / size)
                swap = restored
            paste_back(frames[i], (swap + 1) * 127.5, mask, matrix)
        for i, p in enumerate(pending):
            if i in frames:
                yield frames[i].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
            else:
                yield p.frame

    def _masks(self, jobs, targets: torch.Tensor, swaps: torch.Tensor) -> torch.Tensor:
        size = self.model.crop_size
        if self.mask_mode == "none":
            return torch.from_numpy(full_mask(size))[None, None].expand(len(jobs), 1, size, size).to(self.device)
        target_points = self.mesh(targets).cpu().numpy()
        swap_points = None
        if self.mask_mode == "adaptive" and any(t.track not in self._rules for _, t in jobs):
            swap_points = self.mesh(swaps).cpu().numpy()
        masks = []
        for k, (_, tracked) in enumerate(jobs):
            if self.mask_mode == "hull":
                rule = DEFAULT_RULE
            else:
                if tracked.track not in self._rules:  # once per continuous track
                    self._rules[tracked.track] = adaptive_rule(jaw_offset(swap_points[k], target_points[k]))
                rule = self._rules[tracked.track]
            masks.append(torch.from_numpy(hull_mask(target_points[k], size, rule)))
        return torch.stack(masks)[:, None].to(self.device)


def scale_crop_matrix(matrix: np.ndarray, factor: float) -> np.ndarray:
    """An image -> crop matrix for the same crop resized by ``factor`` (pixel centres: u' = k u + (k - 1) / 2)."""
    scaled = np.asarray(matrix, dtype=np.float64) * factor
    scaled[:, 2] += (factor - 1) / 2
    return scaled


def _face_scale(matrix: np.ndarray) -> float:
    """Scale of an image -> crop matrix (< 1: the face is larger in the image than the crop)."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2]))))


def paste_back(frame: torch.Tensor, crop: torch.Tensor, mask: torch.Tensor, matrix: np.ndarray) -> None:
    """Blend an aligned crop into a frame in place, through the inverse of ``matrix`` (image -> crop pixels).

    Args:
        frame: (3, H, W) float, 0..255, modified in place.
        crop: (3, S, S) float, 0..255.
        mask: (1, S, S) float in [0, 1]; where it is 0 the frame keeps its exact values.
        matrix: (2, 3) image -> crop matrix (OpenCV convention).
    """
    height, width = frame.shape[-2:]
    size = crop.shape[-1]
    to_image = invert_affine(matrix)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    mapped = corners @ to_image[:, :2].T + to_image[:, 2]
    x0, y0 = (max(0, int(np.floor(v)) - 1) for v in mapped.min(0))
    x1, y1 = min(width, int(np.ceil(mapped[:, 0].max())) + 1), min(height, int(np.ceil(mapped[:, 1].max())) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    to_box = to_image.copy()
    to_box[:, 2] -= (x0, y0)  # crop pixels -> pixels of the box [x0, x1) x [y0, y1)
    m = torch.as_tensor(to_box, dtype=torch.float32, device=frame.device)[None]
    warped = warp_affine(torch.cat([crop, mask])[None].float(), m, (y1 - y0, x1 - x0))[0]
    region = frame[:, y0:y1, x0:x1]
    alpha = warped[3:4].clamp(0, 1)
    region.add_(alpha * (warped[:3] - region))
