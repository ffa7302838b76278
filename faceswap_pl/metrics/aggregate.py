"""The evaluation metrics as torchmetrics ``Metric`` objects: states that accumulate over batches and
sum / concatenate across ranks under DDP (``compute`` syncs whenever ``torch.distributed`` is
initialised), so every rank gets the value over the whole evaluation set.

They take features (embeddings, landmarks), not images; :class:`~faceswap_pl.metrics.evaluator.FaceEvaluator`
runs the frozen networks and feeds them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from faceswap_pl.metrics.face import expression_distance, eye_distance, jitter, pose_distance_deg, shape_distance
from faceswap_pl.metrics.geometry import MetricInputError


class IDRetrieval(Metric):
    """Identity retrieval of swapped faces, and their cosine to the source.

    The gallery is fixed with :meth:`set_gallery`: embeddings of the evaluation split's faces labelled
    with their identity -- every identity of the split, sources and targets alike, as in FaceShifter's
    protocol (the closest face among all the split's frames must be the swap's source). Without one, the
    gallery is every source embedding seen (all ranks). An identity's score for a swap is the maximum
    cosine between the swap and that identity's gallery embeddings; a swap counts for top-k when its own
    source identity is among the k best-scoring identities (k capped at the number of identities; ties
    resolved in the swap's favour).

    ``compute()`` returns ``id_top1``, ``id_top5`` (fractions in [0, 1]), ``id_cos`` (mean cosine of each
    swap to its own source embedding), and what they are to be read against: ``gallery_identities`` (M),
    ``gallery_images`` and the chance levels ``id_top1_chance`` = 1 / M and ``id_top5_chance`` =
    min(5, M) / M (a random ranking). Embeddings need not be normalised (they are L2-normalised here).

    Under DDP every rank must have had at least one ``update`` before ``compute`` (torchmetrics
    cannot gather an empty list state next to (N, D) ones); every rank sets the same gallery.

    Args:
        chunk_size: swaps scored at once in ``compute`` (memory: chunk x gallery size).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, chunk_size: int = 1024, **kwargs):
        super().__init__(**kwargs)
        self.chunk_size = int(chunk_size)
        self.add_state("swap_emb", default=[], dist_reduce_fx="cat")
        self.add_state("source_emb", default=[], dist_reduce_fx="cat")
        self.add_state("source_identity", default=[], dist_reduce_fx="cat")
        self.gallery: tuple[torch.Tensor, torch.Tensor] | None = None

    def set_gallery(self, embeddings: torch.Tensor, identity) -> None:
        """Fix the gallery: (G, D) embeddings and their (G,) integer identity labels (None: the sources)."""
        self._computed = None  # torchmetrics caches compute() until the next update: the gallery changes it
        if embeddings is None:
            self.gallery = None
            return
        if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 2 or not embeddings.is_floating_point():
            raise MetricInputError("the gallery must be float embeddings of shape (G, D).")
        labels = identity_labels(identity, embeddings.shape[0], embeddings.device)
        self.gallery = (F.normalize(embeddings.detach().double(), dim=-1), labels)

    def update(self, swap_emb: torch.Tensor, source_emb: torch.Tensor, source_identity) -> None:
        """Add N pairs.

        Args:
            swap_emb: (N, D) embeddings of the swapped faces.
            source_emb: (N, D) embeddings of their identity sources (same recognizer).
            source_identity: (N,) integer identity labels of the sources (tensor or sequence of ints).
        """
        for name, emb in (("swap_emb", swap_emb), ("source_emb", source_emb)):
            if not isinstance(emb, torch.Tensor) or not emb.is_floating_point() or emb.ndim != 2:
                raise MetricInputError(f"{name} must be float embeddings of shape (N, D); got "
                                       f"{tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__}.")
        if swap_emb.shape != source_emb.shape:
            raise MetricInputError(f"swap_emb {tuple(swap_emb.shape)} and source_emb {tuple(source_emb.shape)} "
                                   "must have the same shape.")
        identity = identity_labels(source_identity, swap_emb.shape[0], self.device)
        self.swap_emb.append(swap_emb.detach().to(self.device, torch.float32))
        self.source_emb.append(source_emb.detach().to(self.device, torch.float32))
        self.source_identity.append(identity)

    def compute(self) -> dict[str, torch.Tensor]:
        """The values of the class docstring as 0-d float32 tensors; NaN before any update."""
        keys = ("id_top1", "id_top5", "id_cos", "gallery_identities", "gallery_images", "id_top1_chance",
                "id_top5_chance")
        if isinstance(self.swap_emb, list) and not self.swap_emb:
            return {key: torch.tensor(float("nan"), device=self.device) for key in keys}
        swap = F.normalize(dim_zero_cat(self.swap_emb).double(), dim=-1)
        source = F.normalize(dim_zero_cat(self.source_emb).double(), dim=-1)
        ids = dim_zero_cat(self.source_identity).long()
        if self.gallery is None:
            gallery, gallery_ids = source, ids
        else:
            gallery, gallery_ids = (t.to(self.device) for t in self.gallery)
            missing = sorted(set(ids.tolist()) - set(gallery_ids.tolist()))
            if missing:
                raise MetricInputError(f"source identities {missing[:5]} are not in the retrieval gallery; build the "
                                       f"gallery from the split the pairs come from.")
        n = swap.shape[0]
        known, label = torch.unique(gallery_ids, return_inverse=True)  # gallery identities as 0 .. M-1
        own_label = torch.searchsorted(known, ids)
        identities = int(known.numel())
        top1 = top5 = 0
        for start in range(0, n, self.chunk_size):
            chunk = swap[start:start + self.chunk_size]
            cosine = chunk @ gallery.T  # (c, gallery)
            scores = torch.full((chunk.shape[0], identities), -torch.inf, dtype=cosine.dtype, device=cosine.device)
            scores = scores.scatter_reduce(1, label.expand(chunk.shape[0], -1), cosine, reduce="amax")
            own = scores.gather(1, own_label[start:start + self.chunk_size, None])
            rank = (scores > own).sum(1)  # identities strictly better than the swap's own
            top1 = top1 + (rank < 1).sum()
            top5 = top5 + (rank < min(5, identities)).sum()
        as_tensor = lambda value: torch.tensor(float(value), device=self.device)  # noqa: E731
        return {
            "id_top1": (top1 / n).float(),
            "id_top5": (top5 / n).float(),
            "id_cos": (swap * source).sum(-1).mean().float(),
            "gallery_identities": as_tensor(identities),
            "gallery_images": as_tensor(gallery.shape[0]),
            "id_top1_chance": as_tensor(1.0 / identities),
            "id_top5_chance": as_tensor(min(5, identities) / identities),
        }


def identity_labels(identity, n: int, device) -> torch.Tensor:
    """``identity`` (tensor or sequence of N integers) as an (N,) int64 tensor on ``device``, or a
    :class:`MetricInputError` naming ``source_identity``."""
    try:
        labels = torch.as_tensor(identity, device=device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise MetricInputError(f"source_identity must be {n} integer labels; cannot read it as a tensor "
                               f"({error}).") from error
    bad_dtype = labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool
    if labels.ndim != 1 or labels.shape[0] != n or bad_dtype:
        raise MetricInputError(f"source_identity must be {n} integer labels, shape ({n},); got dtype {labels.dtype} "
                               f"shape {tuple(labels.shape)}.")
    return labels.long()


class _SampleMean(Metric):
    """Mean of a per-sample value over all samples of all ranks (float64 sum + count states)."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _accumulate(self, values: torch.Tensor) -> None:
        values = values.detach().to(self.device, torch.float64)
        self.total += values.sum()
        self.count += values.numel()

    def compute(self) -> torch.Tensor:
        """The mean over every sample seen (NaN before any update), float32."""
        return (self.total / self.count).float()


class ExpressionError(_SampleMean):
    """Mean :func:`~faceswap_pl.metrics.face.expression_distance` (target IODs; lower is better)."""

    def update(self, swap3d: torch.Tensor, target3d: torch.Tensor) -> None:
        """Add N pairs of (N, 468, 3) mesh points: swapped faces, targets."""
        self._accumulate(expression_distance(swap3d, target3d))


class EyeLandmarkError(_SampleMean):
    """Mean :func:`~faceswap_pl.metrics.face.eye_distance` (target IODs; lower is better)."""

    def update(self, swap_iris: torch.Tensor, target_iris: torch.Tensor) -> None:
        """Add N pairs of (N, 152, 2) iris-model points: swapped faces, targets."""
        self._accumulate(eye_distance(swap_iris, target_iris))


class PoseError(_SampleMean):
    """Mean :func:`~faceswap_pl.metrics.face.pose_distance_deg` (degrees; lower is better)."""

    def update(self, swap3d: torch.Tensor, target3d: torch.Tensor) -> None:
        """Add N pairs of (N, 468, 3) mesh points: swapped faces, targets."""
        self._accumulate(pose_distance_deg(swap3d, target3d))


class ShapeError(_SampleMean):
    """Mean :func:`~faceswap_pl.metrics.face.shape_distance` against the source (source IODs; lower is better)."""

    def update(self, swap: torch.Tensor, source: torch.Tensor) -> None:
        """Add N pairs of (N, 468, 2 or 3) mesh points: swapped faces, identity sources."""
        self._accumulate(shape_distance(swap, source))


class TemporalJitter(_SampleMean):
    """Mean over sequences of :func:`~faceswap_pl.metrics.face.jitter` (lower is better).

    Args:
        eye_indices: ``(left_indices, right_indices)`` into the K points: normalise each sequence by
            the target's mean inter-ocular distance (IOD per frame squared); None: raw (points' unit
            per frame squared).
    """

    def __init__(self, eye_indices=None, **kwargs):
        super().__init__(**kwargs)
        if eye_indices is not None:
            eye_indices = tuple((int(eye),) if isinstance(eye, int) else tuple(int(i) for i in eye)
                                for eye in eye_indices)
            if len(eye_indices) != 2:
                raise MetricInputError("eye_indices must be two index sequences (image-left eye, image-right eye).")
        self.eye_indices = eye_indices

    def update(self, swap_seq: torch.Tensor, target_seq: torch.Tensor) -> None:
        """Add one sequence (T, K, D) or a batch of sequences (B, T, K, D): swapped, target landmarks."""
        self._accumulate(jitter(swap_seq, target_seq, self.eye_indices))


__all__ = ["IDRetrieval", "ExpressionError", "EyeLandmarkError", "PoseError", "ShapeError", "TemporalJitter"]
