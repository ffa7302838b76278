"""``FaceEvaluator``: frozen recognizer + MediaPipe mesh and iris, feeding the face-swap metrics.

A plain class, not an ``nn.Module``: set as an attribute of a LightningModule it adds nothing to the
module's ``state_dict`` or parameters (the frozen networks are rebuilt from the zoo, never saved).
Move it with :meth:`FaceEvaluator.to`. Under DDP each rank calls :meth:`~FaceEvaluator.update` on its
share of the data and :meth:`~FaceEvaluator.compute` returns the value over all ranks (every rank
must call ``compute``, as with any torchmetrics metric).
"""

from __future__ import annotations

import torch

from faceswap_pl.alignment import warp_affine
from faceswap_pl.metrics.aggregate import (
    ExpressionError,
    EyeLandmarkError,
    IDRetrieval,
    PoseError,
    ShapeError,
    identity_labels,
)
from faceswap_pl.metrics.face import (
    expression_distance,
    eye_distance,
    jitter,
    pose_distance_deg,
    shape_distance,
)
from faceswap_pl.metrics.geometry import MetricInputError
from faceswap_pl.models.identity import IdentityEncoder, create_identity_encoder
from faceswap_pl.models.landmarks import LandmarkModel, create_landmark_model
from faceswap_pl.models.landmarks.topology import MESH_EYE_CONTOUR, MESH_EYE_CORNERS, MESH_EYES

#: how far image values may stray outside [-1, 1] (interpolation overshoot) before it is an error
RANGE_TOLERANCE = 1e-2
#: feature names :meth:`FaceEvaluator.features` can return
FEATURES = ("embedding", "mesh", "iris")


def check_images(name: str, x, frames: bool = False) -> None:
    """Raise :class:`MetricInputError` naming ``name`` unless ``x`` is a batch of aligned RGB crops.

    Args:
        name: the argument's name, used in the message.
        x: (N, 3, S, S) float images, RGB in [-1, 1] (up to ``RANGE_TOLERANCE``).
        frames: the batch is a video's frames (T, 3, S, S); only changes the message.
    """
    what = "(T, 3, S, S) video frames" if frames else "(N, 3, S, S) aligned face crops"
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = f"dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise MetricInputError(f"{name} must be float {what}, RGB in [-1, 1]; got {got}.")
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3] or x.shape[0] == 0:
        raise MetricInputError(f"{name} must be {what}, RGB in [-1, 1]; got shape {tuple(x.shape)}.")
    if not torch.isfinite(x).all():
        raise MetricInputError(f"{name} contains NaN or infinite values; pass finite images in [-1, 1].")
    low, high = float(x.min()), float(x.max())
    if low < -1 - RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise MetricInputError(f"{name} has values in [{low:.3g}, {high:.3g}]; images must be in [-1, 1] "
                               "(convert uint8 with x / 127.5 - 1).")


def leveled_mesh_3d(mesh, x: torch.Tensor, passes: int = 2) -> torch.Tensor:
    """Mesh points with the face rotated level first, as MediaPipe's tracking does.

    The mesh network was trained on crops rotated so the eye line is level; on a tilted face its
    fixed-ROI points rotate by less than the face does (a crop rotated 10 degrees: 8.2-12.8 degrees
    measured on 6 media faces). Each pass rotates the crop about its centre so the line through the
    outer eye corners (mesh points 33, 263) of the previous estimate is level, reruns the mesh and
    rotates the points back; with 2 passes the same test gives 9.9-10.2 degrees.

    Args:
        mesh: a :class:`~faceswap_pl.models.landmarks.mediapipe.MediaPipeMesh`.
        x: (N, 3, S, S) aligned crops in [-1, 1].
        passes: number of levelled reruns; 0 = the plain fixed-ROI mesh.
    Returns:
        (N, 468, 3) points: x, y in unit crop coordinates, z relative depth (same unit).
    """
    points = mesh.forward_3d(x)
    size = x.shape[-1]
    centre = torch.full((x.shape[0], 2, 1), (size - 1) / 2, dtype=x.dtype, device=x.device)
    outer = (MESH_EYE_CONTOUR[0][0], MESH_EYE_CONTOUR[1][0])
    for _ in range(passes):
        eye_line = points[:, outer[1], :2] - points[:, outer[0], :2]
        angle = torch.atan2(eye_line[:, 1], eye_line[:, 0])
        cos, sin = torch.cos(angle), torch.sin(angle)
        rotation = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)  # by -angle
        shift = centre - rotation @ centre
        level = mesh.forward_3d(warp_affine(x, torch.cat([rotation, shift], -1), size, padding_mode="reflection"))
        xy = (level[..., :2] * size - shift.transpose(1, 2)) @ rotation  # back: R^T (p - t), row vectors
        points = torch.cat([xy / size, level[..., 2:]], -1)
    return points


class FaceEvaluator:
    """Face-swap evaluation: identity retrieval, expression, eye, pose and shape errors.

    Holds the frozen networks (eval mode, no gradients) in a private dict and the metrics in
    :attr:`metrics` (a plain dict of torchmetrics ``Metric`` objects).

    Args:
        recognizer: identity-encoder registry name (default ``"facenet"``, the evaluation recognizer)
            or an :class:`~faceswap_pl.models.identity.IdentityEncoder`.
        mesh: a :class:`~faceswap_pl.models.landmarks.mediapipe.MediaPipeMesh`; default the zoo's.
        iris: a :class:`~faceswap_pl.models.landmarks.mediapipe.MediaPipeIris`; default the zoo's.
        chunk_size: images per forward pass of the networks.
        level_passes: mesh reruns on crops rotated level (:func:`leveled_mesh_3d`); 0 = the fixed ROI.

    A zoo model not in the cache raises :class:`~faceswap_pl.errors.ModelNotFetchedError` naming the
    ``faceswap-pl models fetch`` command.
    """

    def __init__(self, recognizer: str | IdentityEncoder = "facenet", mesh: LandmarkModel | None = None,
                 iris: LandmarkModel | None = None, chunk_size: int = 32, level_passes: int = 2):
        if isinstance(recognizer, str):
            recognizer = create_identity_encoder(recognizer)
        mesh = create_landmark_model("mediapipe_mesh") if mesh is None else mesh
        iris = create_landmark_model("mediapipe_iris") if iris is None else iris
        self._networks = {name: net.eval().requires_grad_(False)
                          for name, net in (("recognizer", recognizer), ("mesh", mesh), ("iris", iris))}
        self.chunk_size = int(chunk_size)
        self.level_passes = int(level_passes)
        self.metrics = {
            "id": IDRetrieval(),
            "expression": ExpressionError(),
            "eye": EyeLandmarkError(),
            "pose_deg": PoseError(),
            "shape": ShapeError(),
        }
        self.to(next(mesh.parameters()).device)

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device) -> "FaceEvaluator":
        """Move the networks and metric states to ``device``; returns self."""
        self._device = torch.device(device)
        for net in self._networks.values():
            net.to(self._device)
        for metric in self.metrics.values():
            metric.to(self._device)
        return self

    # ------------------------------------------------------------------------------------------
    # Features
    # ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def features(self, images: torch.Tensor, name: str = "images",
                 parts: tuple[str, ...] = FEATURES) -> dict[str, torch.Tensor]:
        """Run the frozen networks on aligned crops.

        Args:
            images: (N, 3, S, S) aligned face crops, RGB in [-1, 1].
            name: the argument name used in input errors.
            parts: which of ``FEATURES`` to compute (the iris needs the mesh, which runs anyway).
        Returns:
            The requested of: ``embedding`` (N, D) L2-normalised identity embeddings; ``mesh``
            (N, 468, 3) mesh points (x, y in unit crop coordinates, z relative depth in the same unit;
            :func:`leveled_mesh_3d`); ``iris`` (N, 152, 2) iris-model points in unit crop coordinates,
            from eye crops centred on the mesh's eye-corner midpoints.
        """
        check_images(name, images)
        unknown = set(parts) - set(FEATURES)
        if unknown:
            raise MetricInputError(f"parts {sorted(unknown)} unknown; choose from {', '.join(FEATURES)}.")
        recognizer, mesh, iris = self._networks["recognizer"], self._networks["mesh"], self._networks["iris"]
        out: dict[str, list[torch.Tensor]] = {key: [] for key in FEATURES if key in parts}
        for chunk in images.split(self.chunk_size):
            x = chunk.to(self._device, torch.float32)
            if "embedding" in out:
                out["embedding"].append(recognizer(x))
            if "mesh" in out or "iris" in out:
                points = leveled_mesh_3d(mesh, x, self.level_passes)
                if "mesh" in out:
                    out["mesh"].append(points)
                if "iris" in out:
                    centres = torch.stack([(points[:, a, :2] + points[:, b, :2]) / 2 for a, b in MESH_EYE_CORNERS], 1)
                    out["iris"].append(iris(x, centres=centres))
        return {key: torch.cat(values) for key, values in out.items()}

    @torch.no_grad()
    def set_gallery(self, images: torch.Tensor | None, identity=None) -> None:
        """Fix the identity-retrieval gallery (:class:`~faceswap_pl.metrics.aggregate.IDRetrieval`).

        Args:
            images: (G, 3, S, S) aligned crops of the evaluation split -- every identity, sources and
                targets -- float in [-1, 1] or uint8 (0..255); None: the pairs' sources (the former protocol).
            identity: (G,) integer identity labels.
        """
        if images is None:
            self.metrics["id"].set_gallery(None, None)
            return
        if images.dtype == torch.uint8:
            images = images.float() / 127.5 - 1.0
        embedding = self.features(images, "gallery", parts=("embedding",))["embedding"]
        self.metrics["id"].set_gallery(embedding, identity)

    def _triplet(self, swap, source, target) -> tuple[dict, dict, dict]:
        for name, x in (("swap", swap), ("source", source), ("target", target)):
            check_images(name, x)
        if not swap.shape[0] == source.shape[0] == target.shape[0]:
            raise MetricInputError(f"swap, source and target must hold the same number of faces; got "
                                   f"{swap.shape[0]}, {source.shape[0]} and {target.shape[0]}.")
        return self.features(swap, "swap"), self.features(source, "source"), self.features(target, "target")

    # ------------------------------------------------------------------------------------------
    # Metrics
    # ------------------------------------------------------------------------------------------

    def update(self, swap: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
               source_identity) -> dict[str, torch.Tensor]:
        """Add N swaps to every metric; returns their per-pair values (as :meth:`per_pair`, no second pass).

        Args:
            swap: (N, 3, S, S) swapped faces, aligned crops in [-1, 1].
            source: (N, 3, S, S) the identity sources of the swaps.
            target: (N, 3, S, S) the targets (expression, pose, eyes to keep).
            source_identity: (N,) integer identity labels of the sources (the retrieval gallery labels).
        """
        check_images("swap", swap)
        identity = identity_labels(source_identity, swap.shape[0], self._device)  # checked before the networks run
        fs, fsrc, ft = self._triplet(swap, source, target)
        self.metrics["id"].update(fs["embedding"], fsrc["embedding"], identity)
        self.metrics["expression"].update(fs["mesh"], ft["mesh"])
        self.metrics["eye"].update(fs["iris"], ft["iris"])
        self.metrics["pose_deg"].update(fs["mesh"], ft["mesh"])
        self.metrics["shape"].update(fs["mesh"], fsrc["mesh"])
        return self._per_pair(fs, fsrc, ft)

    def compute(self) -> dict[str, float]:
        """Metric values over everything added (all ranks under DDP).

        Returns:
            ``id_top1``, ``id_top5`` (fractions), ``id_cos`` (cosine), ``expression``, ``eye``, ``shape``
            (fractions of the inter-ocular distance), ``pose_deg`` (degrees), and the retrieval's
            ``gallery_identities``, ``gallery_images``, ``id_top1_chance``, ``id_top5_chance``.
        """
        values = {key: float(value) for key, value in self.metrics["id"].compute().items()}
        for key in ("expression", "eye", "pose_deg", "shape"):
            values[key] = float(self.metrics[key].compute())
        return values

    def reset(self) -> None:
        """Clear every metric's state."""
        for metric in self.metrics.values():
            metric.reset()

    @torch.no_grad()
    def per_pair(self, swap: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample values (not accumulated), for reports.

        Returns:
            (N,) tensors on the evaluator's device: ``id_cos`` (swap vs its source), ``expression``, ``eye``,
            ``pose_deg`` (vs the target), ``shape`` (vs the source); units as in :meth:`compute`.
        """
        return self._per_pair(*self._triplet(swap, source, target))

    @staticmethod
    def _per_pair(fs: dict, fsrc: dict, ft: dict) -> dict[str, torch.Tensor]:
        return {
            "id_cos": (fs["embedding"] * fsrc["embedding"]).sum(-1),
            "expression": expression_distance(fs["mesh"], ft["mesh"]),
            "eye": eye_distance(fs["iris"], ft["iris"]),
            "pose_deg": pose_distance_deg(fs["mesh"], ft["mesh"]),
            "shape": shape_distance(fs["mesh"], fsrc["mesh"]),
        }

    @torch.no_grad()
    def jitter(self, swap_frames: torch.Tensor, target_frames: torch.Tensor) -> float:
        """Temporal jitter of a swapped video against its target video (not accumulated).

        Args:
            swap_frames: (T, 3, S, S) aligned crops of consecutive swapped frames, [-1, 1], T >= 3.
            target_frames: (T, 3, S, S) the corresponding target frames.
        Returns:
            :func:`~faceswap_pl.metrics.face.jitter` of the 468 mesh points (x, y), normalised by the
            target's mean inter-ocular distance: a fraction of the IOD per frame squared (lower is better).
        """
        check_images("swap_frames", swap_frames, frames=True)
        check_images("target_frames", target_frames, frames=True)
        if swap_frames.shape[0] != target_frames.shape[0] or swap_frames.shape[0] < 3:
            raise MetricInputError(f"swap_frames and target_frames must hold the same number (>= 3) of frames; "
                                   f"got {swap_frames.shape[0]} and {target_frames.shape[0]}.")
        points = [self.features(frames, name, parts=("mesh",))["mesh"][..., :2]
                  for name, frames in (("swap_frames", swap_frames), ("target_frames", target_frames))]
        return float(jitter(points[0], points[1], eye_indices=MESH_EYES))

    def __repr__(self) -> str:
        names = ", ".join(type(net).__name__ for net in self._networks.values())
        return f"FaceEvaluator({names}; metrics: {', '.join(self.metrics)}; device {self._device})"
