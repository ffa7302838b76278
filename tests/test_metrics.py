"""Face-swap metrics: closed-form answers on synthetic points, known answers on real aligned faces.

The real-face tests need the zoo entries ``facenet``, ``mediapipe_mesh``, ``mediapipe_iris``, the raw
YuNet file and the media (a missing one fails with the fetch command, never skips). Six media faces
of six different people (``aligned_faces`` in conftest), 112-px aligned crops.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faceswap_pl.errors import FaceSwapError, ModelNotFetchedError
from faceswap_pl.metrics import (
    ExpressionError,
    EyeLandmarkError,
    FaceEvaluator,
    IDRetrieval,
    MetricInputError,
    PoseError,
    ShapeError,
    TemporalJitter,
    expression_distance,
    eye_distance,
    inter_ocular_distance,
    jitter,
    kabsch_rotation,
    pose_distance_deg,
    rotation_angle_deg,
    shape_distance,
    similarity_align,
)
from faceswap_pl.models.landmarks.topology import (
    IRIS_EYE_SET,
    MESH_BROWS,
    MESH_EXPRESSION,
    MESH_EYES,
    MESH_FACE_OVAL,
    MESH_LIPS,
    MESH_STABLE,
)

SIZE = 112


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------

def axis_angle(axis, degrees: float) -> torch.Tensor:
    """(3, 3) float64 rotation about ``axis`` by ``degrees`` (Rodrigues)."""
    k = torch.as_tensor(axis, dtype=torch.float64)
    k = k / k.norm()
    skew = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], dtype=torch.float64)
    theta = math.radians(degrees)
    return torch.eye(3, dtype=torch.float64) + math.sin(theta) * skew + (1 - math.cos(theta)) * skew @ skew


def random_mesh(n: int, seed: int = 0, dims: int = 3) -> torch.Tensor:
    """(n, 468, dims) float64 random point clouds, about face sized in unit coordinates."""
    g = torch.Generator().manual_seed(seed)
    return 0.5 + 0.2 * torch.randn(n, 468, dims, generator=g, dtype=torch.float64)


def warp(images: torch.Tensor, matrix: np.ndarray) -> torch.Tensor:
    """cv2.warpAffine (bilinear, replicated border) of (N, 3, S, S) float images with one 2x3 matrix."""
    out = []
    for image in images.permute(0, 2, 3, 1).numpy():
        out.append(cv2.warpAffine(np.ascontiguousarray(image), np.asarray(matrix, np.float64), image.shape[:2][::-1],
                                  flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])


@pytest.fixture(scope="module")
def evaluator() -> FaceEvaluator:
    return FaceEvaluator()


@pytest.fixture(scope="module")
def reference(evaluator, aligned_faces) -> dict[str, torch.Tensor]:
    """Mesh and iris features of the unmodified faces."""
    return evaluator.features(aligned_faces, parts=("mesh", "iris"))


# ------------------------------------------------------------------------------------------------
# Geometry on exact synthetic points
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("degrees", [0.0, 1e-3, 0.5, 10.0, 45.0, 90.0, 135.0, 179.5])
def test_rotation_angle_of_exact_rotations(degrees):
    a = random_mesh(4, seed=1)[:, :50]
    axes = [(0, 0, 1), (1, 0, 0), (1, 2, 3), (-0.3, 0.8, 0.1)]
    rotations = torch.stack([axis_angle(axis, degrees) for axis in axes])
    # the angle ignores translation and scale
    b = 1.7 * a @ rotations.transpose(1, 2) + torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    angle = rotation_angle_deg(a, b)
    assert angle.shape == (4,)
    assert torch.allclose(angle, torch.full((4,), degrees, dtype=torch.float64), atol=1e-4, rtol=0)
    assert torch.allclose(kabsch_rotation(a, b), rotations, atol=1e-9)
    assert torch.allclose(rotation_angle_deg(a.float(), b.float()).double(), angle, atol=1e-2)  # float32 inputs


def test_rotation_angle_2d_and_unbatched():
    a = random_mesh(1, seed=2, dims=2)[0, :20]
    theta = math.radians(33.0)
    r = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype=torch.float64)
    angle = rotation_angle_deg(a, a @ r.T)
    assert angle.ndim == 0 and abs(float(angle) - 33.0) < 1e-6


def test_reflection_is_never_fitted():
    a = random_mesh(2, seed=3)[:, :30]
    mirrored = a * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)  # a mirror image, not a rotation
    rotation = kabsch_rotation(a, mirrored)
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(2, dtype=torch.float64), atol=1e-9)
    angle = rotation_angle_deg(a, mirrored)
    assert torch.isfinite(angle).all() and ((angle >= 0) & (angle <= 180)).all()
    # the fitted map is a proper rotation, so a mirrored cloud cannot be matched exactly
    aligned = similarity_align(a, mirrored)
    assert (aligned - mirrored).norm(dim=-1).mean() > 1e-3


@pytest.mark.parametrize("dims", [2, 3])
def test_similarity_align_recovers_a_similarity(dims):
    src = random_mesh(3, seed=4, dims=dims)[:, :40]
    if dims == 3:
        rotation = axis_angle((1, -1, 2), 25.0)
    else:
        rotation = torch.tensor([[math.cos(0.4), -math.sin(0.4)], [math.sin(0.4), math.cos(0.4)]], dtype=torch.float64)
    dst = 0.6 * src @ rotation.T + 0.25
    assert torch.allclose(similarity_align(src, dst), dst, atol=1e-10)
    assert torch.allclose(similarity_align(src[0], dst[0]), dst[0], atol=1e-10)  # (K, D) input
    # rotation_only: no scaling, so a scaled copy is not matched, a rigidly moved one is
    assert (similarity_align(src, dst, rotation_only=True) - dst).norm(dim=-1).mean() > 0.01
    rigid = src @ rotation.T + 0.25
    assert torch.allclose(similarity_align(src, rigid, rotation_only=True), rigid, atol=1e-10)
    # fitted on a subset, applied to all: outliers outside the subset do not move the fit
    moved = dst.clone()
    moved[:, 30:] += 5.0
    assert torch.allclose(similarity_align(src, moved, subset=range(30))[:, :30], dst[:, :30], atol=1e-10)


# ------------------------------------------------------------------------------------------------
# Per-sample distances on synthetic landmarks (closed forms)
# ------------------------------------------------------------------------------------------------

def test_index_sets():
    assert len(MESH_LIPS) == 40 and len(MESH_BROWS[0]) == len(MESH_BROWS[1]) == 10
    assert len(set(MESH_EXPRESSION)) == len(MESH_EXPRESSION) == 92
    assert len(MESH_STABLE) == 468 - 92 and not set(MESH_STABLE) & set(MESH_EXPRESSION)
    assert len(set(MESH_FACE_OVAL)) == 36 and set(MESH_FACE_OVAL) <= set(MESH_STABLE)
    assert IRIS_EYE_SET == tuple(range(16)) + (71,) + tuple(range(76, 92)) + (147,)


def test_expression_distance_closed_form():
    target = random_mesh(3, seed=5)
    move = axis_angle((0.2, 1, 0.1), 20.0)
    swap = 1.3 * target @ move.T + torch.tensor([0.1, 0.0, -0.2], dtype=torch.float64)
    # the same expression in another pose and size: 0
    assert expression_distance(swap, target).abs().max() < 1e-12
    # every expression point of the target moved by d (the rigid points kept): |d| / IOD
    d = torch.tensor([0.003, -0.004, 0.0], dtype=torch.float64)  # |d| = 0.005
    changed = target.clone()
    changed[:, list(MESH_EXPRESSION)] += d
    iod = inter_ocular_distance(changed)  # both eyes moved together: IOD unchanged
    assert torch.allclose(iod, inter_ocular_distance(target))
    assert torch.allclose(expression_distance(swap, changed), 0.005 / iod, atol=1e-12)
    # 2-D points work too
    assert expression_distance(target[..., :2], target[..., :2]).abs().max() < 1e-12


def test_eye_distance_closed_form():
    g = torch.Generator().manual_seed(6)
    target = torch.rand(4, 152, 2, generator=g, dtype=torch.float64)
    target[:, 71] = torch.tensor([0.34, 0.46], dtype=torch.float64)
    target[:, 147] = torch.tensor([0.66, 0.46], dtype=torch.float64)  # IOD 0.32
    swap = target.clone()
    d = torch.tensor([0.012, -0.005], dtype=torch.float64)  # |d| = 0.013
    swap[:, [71, 147]] += d
    # 2 of the 34 compared points moved by |d|
    expected = 2 * 0.013 / 34 / 0.32
    assert torch.allclose(eye_distance(swap, target), torch.full((4,), expected, dtype=torch.float64), atol=1e-12)
    assert eye_distance(target, target).abs().max() == 0
    swap = target.clone()
    swap[:, 72:76] += 1.0  # iris boundary and brow points are not compared
    swap[:, 16:71] += 1.0
    assert eye_distance(swap, target).abs().max() == 0


def test_pose_and_shape_distance_closed_form():
    source = random_mesh(2, seed=7)
    rotated = source @ axis_angle((0, 1, 0), 12.0).T
    assert torch.allclose(pose_distance_deg(rotated, source), torch.full((2,), 12.0, dtype=torch.float64), atol=1e-6)
    # the silhouette up to a 2-D similarity: 0; expression points do not count
    swap = 0.8 * source.clone() + 0.1
    swap[:, list(MESH_EXPRESSION)] += 0.05
    assert shape_distance(swap, source).abs().max() < 1e-12
    # a horizontal stretch of the oval is not a similarity, so it counts
    wider = source.clone()
    wider[:, list(MESH_FACE_OVAL), 0] = 0.5 + 1.2 * (wider[:, list(MESH_FACE_OVAL), 0] - 0.5)
    assert (shape_distance(wider, source) > 0.01).all()


def test_jitter_closed_form():
    g = torch.Generator().manual_seed(8)
    still = torch.rand(1, 6, 2, generator=g, dtype=torch.float64).expand(9, 6, 2).contiguous()  # T=9, K=6
    assert jitter(still, still) == 0
    d = torch.tensor([0.003, 0.004], dtype=torch.float64)  # |d| = 0.005
    sign = torch.tensor([(-1.0) ** t for t in range(9)], dtype=torch.float64)[:, None, None]
    shaken = still + sign * d
    assert torch.isclose(jitter(shaken, still), torch.tensor(4 * 0.005, dtype=torch.float64), atol=1e-12)
    # the same motion in both sequences does not count
    assert jitter(shaken, shaken) == 0
    # normalised by the target's mean inter-ocular distance (points 0-1 one eye, 2-3 the other)
    eyes = ((0, 1), (2, 3))
    iod = inter_ocular_distance(still, eyes).mean()
    assert torch.isclose(jitter(shaken, still, eyes), 4 * 0.005 / iod, atol=1e-12)
    # batched sequences
    batch = jitter(torch.stack([shaken, still]), torch.stack([still, still]))
    assert batch.shape == (2,) and torch.allclose(batch, torch.tensor([0.02, 0.0], dtype=torch.float64))


# ------------------------------------------------------------------------------------------------
# Metric classes on synthetic features
# ------------------------------------------------------------------------------------------------

def test_id_retrieval_known_ranks():
    e = torch.eye(8)
    # gallery (= the sources, one per pair): identity 12 has two embeddings, every other identity one
    ids = torch.tensor([10, 11, 12, 12, 13, 14, 15, 16])
    source = torch.stack([e[0], e[1], e[2], 0.6 * e[2] + 0.8 * e[7], e[3], e[4], e[5], e[6]])
    swap = torch.stack([
        e[0],                               # own 10 scores 1, the rest 0: rank 0
        0.6 * e[1] + 0.8 * e[3],            # 13 (0.8) beats own 11 (0.6): rank 1
        0.8 * e[7] + 0.5 * e[0],            # own 12 = max(0, 0.64) beats 10 (0.5); its mean would not: rank 0
        0.2 * e[2] + e[0] + e[1] + e[3] + e[4] + e[5],  # 10, 11, 13, 14, 15 beat own 12: rank 5
        e[3],                               # own 13: rank 0
        e[4] + e[6],                        # own 14 tied with 16: ties count for the swap, rank 0
        0.6 * e[5] + 0.8 * e[6],            # 16 beats own 15: rank 1
        e[6],                               # own 16: rank 0
    ])
    # the definition, computed independently of the metric
    cosine = F.normalize(swap, dim=-1) @ F.normalize(source, dim=-1).T
    labels = sorted(set(ids.tolist()))
    scores = torch.stack([cosine[:, ids == label].max(1).values for label in labels], 1)
    own = scores[torch.arange(8), [labels.index(i) for i in ids.tolist()]]
    assert (scores > own[:, None]).sum(1).tolist() == [0, 1, 0, 5, 0, 0, 1, 0]

    metric = IDRetrieval()
    metric.update(swap[:3], source[:3], ids[:3])
    metric.update(swap[3:], source[3:], ids[3:].tolist())  # identities as a list work too
    out = metric.compute()
    assert out["id_top1"] == pytest.approx(5 / 8) and out["id_top5"] == pytest.approx(7 / 8)
    own_cos = (F.normalize(swap, dim=-1) * F.normalize(source, dim=-1)).sum(1)
    assert out["id_cos"] == pytest.approx(float(own_cos.mean()), abs=1e-6)


def test_id_retrieval_searches_a_gallery_of_every_identity():
    e = torch.eye(6)
    # two pairs; the gallery holds their source identities 0, 1 AND the targets' / other identities 2..5
    source = torch.stack([e[0], e[1]])
    swap = torch.stack([0.9 * e[0] + 0.1 * e[4],   # own 0 is nearest among all 6 identities: rank 0
                        0.5 * e[1] + 0.8 * e[5]])  # 5 -- not a source, only in the gallery -- beats own 1: rank 1
    gallery = torch.stack([e[0], e[1], e[2], e[3], e[4], e[5], 0.5 * e[0] + 0.5 * e[1]])
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 0])  # identity 0 has two gallery images
    metric = IDRetrieval()
    metric.update(swap, source, torch.tensor([0, 1]))
    sources_only = metric.compute()  # the former protocol: only the sources compete, both are retrieved
    assert sources_only["id_top1"] == 1.0 and sources_only["gallery_identities"] == 2
    metric.set_gallery(gallery, labels)
    out = metric.compute()
    assert out["id_top1"] == pytest.approx(0.5) and out["id_top5"] == 1.0
    assert out["gallery_identities"] == 6 and out["gallery_images"] == 7
    assert out["id_top1_chance"] == pytest.approx(1 / 6) and out["id_top5_chance"] == pytest.approx(5 / 6)
    metric.set_gallery(gallery[2:], labels[2:])  # a gallery without the sources is the wrong split
    with pytest.raises(MetricInputError, match="not in the retrieval gallery"):
        metric.compute()


def test_id_retrieval_top5_capped_and_unnormalised():
    metric = IDRetrieval()
    # 3 identities: top-5 means "among all 3" -> always 1; embeddings need not be unit vectors
    source = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    swap = torch.tensor([[0.0, 5.0], [0.0, 5.0], [1.0, 1.0]])
    metric.update(swap, source, torch.tensor([0, 1, 2]))
    out = metric.compute()
    assert out["id_top1"] == pytest.approx(1 / 3) and out["id_top5"] == 1.0
    assert out["id_cos"] == pytest.approx((0.0 + 1.0 - math.sqrt(0.5)) / 3, abs=1e-6)
    metric.reset()
    with pytest.warns(UserWarning):  # torchmetrics: compute before update
        assert math.isnan(metric.compute()["id_top1"])


def test_mean_metrics_accumulate_over_updates():
    a, b = random_mesh(5, seed=9), random_mesh(5, seed=10)
    g = torch.Generator().manual_seed(11)
    ia, ib = torch.rand(5, 152, 2, generator=g, dtype=torch.float64), torch.rand(5, 152, 2, generator=g,
                                                                                  dtype=torch.float64)
    cases = [(ExpressionError(), expression_distance, a, b), (PoseError(), pose_distance_deg, a, b),
             (ShapeError(), shape_distance, a, b), (EyeLandmarkError(), eye_distance, ia, ib)]
    for metric, function, x, y in cases:
        metric.update(x[:2].float(), y[:2].float())
        metric.update(x[2:].float(), y[2:].float())
        assert torch.allclose(metric.compute(), function(x, y).mean().float(), rtol=1e-5), type(metric).__name__
    sequences = TemporalJitter(eye_indices=((0, 1), (2, 3)))
    seq_a, seq_b = torch.rand(2, 7, 6, 2, generator=g), torch.rand(2, 7, 6, 2, generator=g)
    sequences.update(seq_a[0], seq_b[0])
    sequences.update(seq_a[1:], seq_b[1:])  # a batch of one sequence
    assert torch.allclose(sequences.compute(), jitter(seq_a, seq_b, ((0, 1), (2, 3))).mean(), rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Real faces through FaceEvaluator
# ------------------------------------------------------------------------------------------------

def test_swap_equal_to_source_is_retrieved(evaluator, aligned_faces):
    ids = torch.arange(len(aligned_faces))
    targets = aligned_faces.roll(1, 0)  # someone else's expression and pose
    evaluator.reset()
    evaluator.update(aligned_faces, aligned_faces, targets, ids)
    out = evaluator.compute()
    assert set(out) == {"id_top1", "id_top5", "id_cos", "expression", "eye", "pose_deg", "shape",
                        "gallery_identities", "gallery_images", "id_top1_chance", "id_top5_chance"}
    assert out["id_top1"] == 1.0 and out["id_top5"] == 1.0
    assert out["gallery_identities"] == len(aligned_faces)
    assert out["id_top1_chance"] == pytest.approx(1 / len(aligned_faces))
    assert out["id_cos"] == pytest.approx(1.0, abs=1e-5)
    assert out["shape"] < 1e-9  # measured ~2e-16
    # against other people: clearly not 0 (measured 0.070 and 0.133)
    assert out["expression"] > 0.02 and out["eye"] > 0.02
    # the swap shows someone else's face (the target's): no swap is retrieved as its source
    evaluator.reset()
    evaluator.update(targets, aligned_faces, targets, ids)
    out = evaluator.compute()
    assert out["id_top1"] == 0.0 and out["id_cos"] < 0.6  # measured mean cosine 0.25
    assert out["shape"] > 0.01  # measured 0.17 (other people's face ovals)
    evaluator.reset()


def test_swap_equal_to_target_has_no_attribute_error(evaluator, aligned_faces):
    sources = aligned_faces.roll(2, 0)
    evaluator.reset()
    evaluator.update(aligned_faces, sources, aligned_faces, torch.arange(6).roll(2))
    out = evaluator.compute()
    assert out["eye"] == 0.0
    assert out["expression"] < 1e-9 and out["pose_deg"] < 1e-9  # measured ~5e-16 and ~8e-15
    pairs = evaluator.per_pair(aligned_faces, sources, aligned_faces)
    assert set(pairs) == {"id_cos", "expression", "eye", "pose_deg", "shape"}
    assert all(v.shape == (6,) for v in pairs.values())
    assert (pairs["eye"] == 0).all() and (pairs["expression"] < 1e-9).all() and (pairs["pose_deg"] < 1e-9).all()
    assert pairs["expression"].mean() == pytest.approx(out["expression"], abs=1e-9)
    evaluator.reset()


@pytest.mark.parametrize("degrees", [10.0, -10.0])
def test_in_plane_rotation_gives_pose_error(evaluator, aligned_faces, reference, degrees):
    matrix = cv2.getRotationMatrix2D(((SIZE - 1) / 2, (SIZE - 1) / 2), degrees, 1.0)
    rotated = evaluator.features(warp(aligned_faces, matrix), parts=("mesh",))["mesh"]
    pose = pose_distance_deg(rotated, reference["mesh"])
    # measured (6 faces, levelled mesh): 9.87-10.12 (+10) and 9.88-10.22 (-10) degrees; the plain
    # fixed-ROI mesh (level_passes=0) gives 8.2-12.8
    assert (pose - 10.0).abs().max() < 0.5
    # pose does not leak into the expression error: measured <= 0.009 IOD
    assert expression_distance(rotated, reference["mesh"]).max() < 0.02


def test_image_shift_gives_eye_error(evaluator, aligned_faces, reference):
    """Shifting the crop by k px moves every eye point by k / S: eye error k / S / IOD."""
    k = 3.0
    iod = inter_ocular_distance(reference["iris"], (71, 147))
    ratios = []
    for dx, dy in ((k, 0), (-k, 0), (0, k), (0, -k)):
        shifted = evaluator.features(warp(aligned_faces, translation(dx, dy)), parts=("iris",))["iris"]
        ratios.append(eye_distance(shifted, reference["iris"]) / (k / SIZE / iod))
    ratios = torch.stack(ratios)
    # measured: ratio 0.941-1.035 per face and direction, mean 1.00
    assert (ratios - 1).abs().max() < 0.1
    assert abs(float(ratios.mean()) - 1) < 0.03


def test_video_jitter(evaluator, aligned_faces):
    k = 3.0
    for face in aligned_faces[:3]:
        still = face.expand(6, 3, SIZE, SIZE).contiguous()
        assert evaluator.jitter(still, still) == 0.0
        shaken = torch.cat([warp(face[None], translation((-1) ** t * k, 0)) for t in range(6)])
        iod = float(inter_ocular_distance(evaluator.features(face[None], parts=("mesh",))["mesh"][..., :2], MESH_EYES))
        ratio = evaluator.jitter(shaken, still) / (4 * k / SIZE / iod)
        # measured 0.92-1.10 over the 6 faces (mesh noise on top of the exact shake)
        assert abs(ratio - 1) < 0.15


# ------------------------------------------------------------------------------------------------
# Errors, device, checkpoints
# ------------------------------------------------------------------------------------------------

def test_input_errors_name_the_argument(evaluator, aligned_faces):
    faces = aligned_faces[:2]
    ids = torch.tensor([0, 1])
    with pytest.raises(MetricInputError, match=r"^swap must be .*\(N, 3, S, S\)"):
        evaluator.update(faces.permute(0, 2, 3, 1), faces, faces, ids)
    with pytest.raises(MetricInputError, match=r"^target has values in \[.*\[-1, 1\]"):
        evaluator.update(faces, faces, (faces + 1) * 127.5, ids)
    with pytest.raises(MetricInputError, match="same number of faces"):
        evaluator.per_pair(faces, faces[:1], faces)
    with pytest.raises(MetricInputError, match="source_identity"):
        evaluator.update(faces, faces, faces, torch.tensor([0.5, 1.5]))
    with pytest.raises(MetricInputError, match="swap_frames and target_frames"):
        evaluator.jitter(faces, faces)  # 2 frames
    with pytest.raises(MetricInputError, match=r"^swap3d must be points of shape \(N, 468, 3\)"):
        pose_distance_deg(torch.zeros(2, 468, 2), torch.zeros(2, 468, 2))
    with pytest.raises(MetricInputError, match=r"^swap_iris .* target_iris .* same shape"):
        eye_distance(torch.zeros(2, 152, 2), torch.zeros(3, 152, 2))
    with pytest.raises(MetricInputError, match="needs at least 3"):
        jitter(torch.zeros(2, 5, 2), torch.zeros(2, 5, 2))
    assert issubclass(MetricInputError, FaceSwapError)
    with pytest.warns(UserWarning):  # torchmetrics: compute before update
        assert ExpressionError().compute().isnan()  # NaN, not an exception


def test_missing_zoo_model_names_the_fetch_command(monkeypatch, tmp_path):
    monkeypatch.setenv("FACESWAP_PL_HOME", str(tmp_path))
    with pytest.raises(ModelNotFetchedError, match="faceswap-pl models fetch facenet"):
        FaceEvaluator()
    with pytest.raises(ModelNotFetchedError, match="faceswap-pl models fetch mediapipe_mesh"):
        FaceEvaluator(recognizer=torch.nn.Identity())


def test_not_part_of_a_module_state_and_frozen(evaluator):
    holder = torch.nn.Module()
    holder.evaluator = evaluator
    assert holder.state_dict() == {} and list(holder.parameters()) == []
    assert evaluator.to("cpu") is evaluator and evaluator.device == torch.device("cpu")
    for network in evaluator._networks.values():
        assert not network.training and not any(p.requires_grad for p in network.parameters())
