"""MediaPipe mesh and iris in torch: parity with the LiteRT runtime, geometry on real faces, freezing.

Needs the zoo entries ``mediapipe_mesh``, ``mediapipe_iris``, the raw YuNet ONNX file (fetched with
``yunet``) and the media files; a missing one fails with the fetch command (never skips).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import need, read_rgb, yunet_align

from faceswap_pl.alignment import arcface_template, transform_points, warp_affine
from faceswap_pl.errors import UnsupportedTFLiteOpError
from faceswap_pl.models.importers import tflite as tflite_import
from faceswap_pl.models.importers.tflite import TFLiteModule, run_op
from faceswap_pl.models.landmarks.mediapipe import (
    MediaPipeIris,
    MediaPipeMesh,
    crop_eyes,
    square_roi_matrix,
    template_eye_centres,
)
from faceswap_pl.models.landmarks.topology import (
    IRIS_CENTRE_INDICES,
    MESH_EYE_CONTOUR,
    MESH_EYE_CORNERS,
    MESH_MOUTH_CORNERS,
)

# real faces: the aligned Tom Hanks crop plus near-frontal media faces aligned with YuNet's 5 points
_FACE_FILES = ("single_face.jpg", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg")


@pytest.fixture(scope="module")
def mesh() -> MediaPipeMesh:
    need("mediapipe_mesh")
    return MediaPipeMesh()


@pytest.fixture(scope="module")
def iris() -> MediaPipeIris:
    need("mediapipe_iris")
    return MediaPipeIris()


def _to_model_range(images: list[np.ndarray]) -> torch.Tensor:
    """HxWx3 uint8 RGB images -> (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@pytest.fixture(scope="module")
def tom(media) -> torch.Tensor:
    """(1, 3, 112, 112) in [-1, 1]: an aligned 112-px face on the ArcFace template."""
    return _to_model_range([read_rgb(media("Tom_Hanks_54745.png"))])


@pytest.fixture(scope="module")
def detected(media) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The media faces as (full RGB image, 2x3 image->112-px-crop matrix, aligned 112-px crop)."""
    found_faces = []
    for name in _FACE_FILES:
        image = read_rgb(media(name))
        crop, matrix = yunet_align(image, name)
        found_faces.append((image, matrix, crop))
    return found_faces


@pytest.fixture(scope="module")
def faces(tom, detected) -> torch.Tensor:
    """(5, 3, 112, 112) aligned real faces in [-1, 1]: Tom Hanks and the detected media faces."""
    return torch.cat([tom, _to_model_range([crop for _, _, crop in detected])])


def _litert(zoo_name: str, filename: str, x_nhwc: np.ndarray) -> list[np.ndarray]:
    """Run the raw TFLite file in the LiteRT reference runtime (1 thread, batch 1)."""
    from ai_edge_litert.interpreter import Interpreter

    from faceswap_pl import zoo

    need(zoo_name)
    path = zoo.cache_root() / "raw" / zoo_name / filename
    assert path.is_file(), f"{path} is missing; run `faceswap-pl models fetch {zoo_name}`"
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.ascontiguousarray(x_nhwc))
    interpreter.invoke()
    return [interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()]


# ------------------------------------------------------------------------------------------------
# torch vs LiteRT
# ------------------------------------------------------------------------------------------------

def test_mesh_matches_litert(mesh, tom):
    # the real 192-px input the model builds from the aligned face
    size = tom.shape[-1]
    to_pixels = mesh.roi_matrix(1) @ torch.diag(torch.tensor([1.0 / size, 1.0 / size, 1.0]))
    crop = warp_affine((tom + 1) / 2, to_pixels[:, :2], 192, padding_mode="reflection")
    ref_points, ref_score = _litert("mediapipe_mesh", "face_landmark.tflite", crop.permute(0, 2, 3, 1).numpy())
    with torch.no_grad():
        points, score = mesh.net(crop)
    assert points.shape == (1, 1, 1, 1404) and ref_points.shape == (1, 1, 1, 1404)
    # measured: 1.2e-4 px over 468 x 3 values up to ~165 px; presence logit 1.9e-5
    assert np.abs(points.numpy() - ref_points).max() <= 1e-2
    assert np.abs(score.numpy() - ref_score).max() <= 1e-3


def test_iris_matches_litert(iris, tom):
    crops, _ = crop_eyes((tom + 1) / 2)
    for eye in range(2):  # the plain image-left eye and the mirrored image-right eye
        crop = crops[:, eye]
        ref_contour, ref_iris = _litert("mediapipe_iris", "iris_landmark.tflite", crop.permute(0, 2, 3, 1).numpy())
        with torch.no_grad():
            contour, iris_points = iris.net(crop)
        # measured: <= 4e-5 px (contours, 213 values) and <= 2.3e-5 px (iris, 15 values)
        assert np.abs(contour.numpy() - ref_contour).max() <= 1e-2
        assert np.abs(iris_points.numpy() - ref_iris).max() <= 1e-2


# ------------------------------------------------------------------------------------------------
# Geometry on real aligned faces
# ------------------------------------------------------------------------------------------------

def test_mesh_points_lie_on_the_template(mesh, faces):
    with torch.no_grad():
        points = mesh(faces).numpy()
    assert points.shape == (len(faces), 468, 2)
    template = arcface_template(1)  # unit coordinates; inter-ocular distance 0.315
    for eye, (outer, inner) in enumerate(MESH_EYE_CORNERS):
        centre = (points[:, outer] + points[:, inner]) / 2
        # measured <= 0.038 (the corner midpoint sits a little below the template's pupil point)
        assert np.linalg.norm(centre - template[eye], axis=1).max() < 0.05
    for side, index in enumerate(MESH_MOUTH_CORNERS):
        # measured <= 0.073 (a wide smile); a mirrored or unscaled mapping would be off by > 0.2
        assert np.linalg.norm(points[:, index] - template[3 + side], axis=1).max() < 0.09


def _mesh_in_full_image(mesh: MediaPipeMesh, image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """MediaPipe's own tracking step in the full image: from (468, 2) image points, crop a level
    square of 1.5x the points' bounding box (rotated to the 33->263 eye line) and rerun the mesh."""
    low, high = points.min(0), points.max(0)
    centre, side = (low + high) / 2, 1.5 * (high - low).max()
    dx, dy = points[263] - points[33]
    k, angle = 192 / side, np.arctan2(dy, dx)
    rotation = k * np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    matrix = np.hstack([rotation, (95.5 - rotation @ centre)[:, None]])
    crop = cv2.warpAffine(image, matrix, (192, 192), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    with torch.no_grad():
        raw, _ = mesh.net(torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255)
    return transform_points(raw.reshape(468, 3)[:, :2].numpy(), cv2.invertAffineTransform(matrix))


def test_mesh_agrees_with_mediapipe_in_the_full_image(mesh, detected):
    """The fixed ROI cut from the aligned crop vs MediaPipe's landmark-tracking ROI in the image."""
    crops = _to_model_range([crop for _, _, crop in detected])
    with torch.no_grad():
        ours = mesh(crops).numpy() * 112
    errors = []
    for (image, matrix, _), points in zip(detected, ours):
        in_image = transform_points(points, cv2.invertAffineTransform(matrix))
        reference = _mesh_in_full_image(mesh, image, _mesh_in_full_image(mesh, image, in_image))
        errors.append(np.linalg.norm(transform_points(reference, matrix) - points, axis=1).mean())
    errors = np.array(errors) / (arcface_template(112)[1, 0] - arcface_template(112)[0, 0])
    # measured: mean 2.1 %, worst 2.4 % of the inter-ocular distance (ROI side 1.0 instead of 1.24:
    # mean 4.2 %, worst 5.9 %; side 1.5: 5.6 % / 6.6 %)
    assert errors.mean() < 0.03 and errors.max() < 0.035


def test_mesh_3d_depth_and_presence(mesh, faces):
    with torch.no_grad():
        points, presence = mesh.forward_3d(faces, with_score=True)
    assert points.shape == (len(faces), 468, 3)
    assert (presence > 0.9).all()
    z = points[..., 2]
    # MediaPipe depth: the nose tip (4) is nearer the camera (smaller z) than the cheeks (234, 454)
    assert (z[:, 4] < z[:, 234] - 0.1).all() and (z[:, 4] < z[:, 454] - 0.1).all()


def test_iris_centres_inside_the_eyes(mesh, iris, faces):
    with torch.no_grad():
        mesh_points = mesh(faces).numpy() * 112
        iris_points = iris(faces).numpy()
    assert iris_points.shape == (len(faces), 152, 2)
    template = arcface_template(1)
    for eye, (centre_index, contour) in enumerate(zip(IRIS_CENTRE_INDICES, MESH_EYE_CONTOUR)):
        centres = iris_points[:, centre_index]
        # measured <= 0.039 from the template eye point (unit coordinates)
        assert np.linalg.norm(centres - template[eye], axis=1).max() < 0.05
        # the iris centre lies inside the eyelid polygon of the (independent) mesh model
        polygon_order = list(contour[:9]) + list(contour[9:][::-1])  # lower lid then upper lid back
        for face in range(len(faces)):
            polygon = mesh_points[face, polygon_order].astype(np.float32)
            inside = cv2.pointPolygonTest(polygon, tuple(float(v) for v in centres[face] * 112), True)
            assert inside > 0.5, f"face {face}, eye {eye}: iris centre {inside:.2f} px inside the eyelids"


def test_iris_contours_follow_the_mesh(mesh, iris, faces):
    """Iris outputs 0-15 / 76-91 are the eyelid contours matching mesh ``MESH_EYE_CONTOUR``."""
    with torch.no_grad():
        mesh_points, iris_points = mesh(faces).numpy(), iris(faces).numpy()
    for eye, contour in enumerate(MESH_EYE_CONTOUR):
        start = eye * 76
        distance = np.linalg.norm(iris_points[:, start:start + 16] - mesh_points[:, list(contour)], axis=-1)
        # measured: mean 0.016 / 0.013 (unit coordinates; an eye is about 0.14 wide); with the
        # image-right eye not mirrored its contour is off by 0.087
        assert distance.mean() < 0.025


def test_iris_from_mesh_eye_centres(mesh, iris, faces):
    """Eye crops centred on the mesh's eye-corner midpoints find the same irises as template crops."""
    with torch.no_grad():
        points = mesh(faces)
        centres = torch.stack([(points[:, outer] + points[:, inner]) / 2 for outer, inner in MESH_EYE_CORNERS], 1)
        default, from_mesh = iris(faces), iris(faces, centres=centres)
    _, back_default = crop_eyes(faces)
    _, back_mesh = crop_eyes(faces, centres)
    assert (back_default - back_mesh).abs().max() > 1e-3  # the given centres are really used
    # measured: iris centres move by <= 0.0036 (unit coordinates)
    assert (default - from_mesh)[:, list(IRIS_CENTRE_INDICES)].norm(dim=-1).max() < 0.01


def test_outputs_do_not_depend_on_the_crop_size(mesh, iris, faces):
    bigger = torch.nn.functional.interpolate(faces, size=224, mode="bilinear", align_corners=False)
    with torch.no_grad():
        mesh_diff = (mesh(bigger) - mesh(faces)).abs()
        iris_diff = (iris(bigger) - iris(faces)).abs()
    # measured: mesh max 0.0056 / mean 0.0022, iris mean 0.0023 (unit coordinates)
    assert mesh_diff.max() < 0.015 and mesh_diff.mean() < 0.005
    assert iris_diff.mean() < 0.005


# ------------------------------------------------------------------------------------------------
# Crops
# ------------------------------------------------------------------------------------------------

def test_crop_eyes_geometry():
    x = torch.zeros(2, 1, 100, 100)
    crops, back = crop_eyes(x, size=64, scale=1.2)
    assert crops.shape == (2, 2, 1, 64, 64) and back.shape == (2, 2, 2, 3)
    centres = torch.as_tensor(template_eye_centres(), dtype=torch.float32)
    middle = torch.tensor([31.5, 31.5])
    for eye in range(2):
        mapped = back[0, eye, :, :2] @ middle + back[0, eye, :, 2]
        assert torch.allclose(mapped, centres[eye], atol=1e-5)
    # crop pixel x = 0: left of the centre for the plain eye, right of it for the mirrored eye
    left = torch.tensor([0.0, 31.5])
    assert (back[0, 0, :, :2] @ left + back[0, 0, :, 2])[0] < centres[0, 0]
    assert (back[0, 1, :, :2] @ left + back[0, 1, :, 2])[0] > centres[1, 0]
    # side: 64 crop pixels = 1.2 x the eye distance
    side = torch.linalg.det(back[0, 0, :, :2]).abs().sqrt() * 64
    assert torch.isclose(side, 1.2 * torch.linalg.norm(centres[1] - centres[0]), rtol=1e-5)


def test_crop_eyes_mirrors_the_right_eye():
    # a horizontal ramp: brightness grows to the right; the mirrored crop must grow to the left
    ramp = torch.linspace(0, 1, 128).expand(1, 1, 128, 128).contiguous()
    crops, _ = crop_eyes(ramp)
    plain, mirrored = crops[0, 0, 0, 32], crops[0, 1, 0, 32]
    assert plain[-1] > plain[0] + 0.1 and mirrored[0] > mirrored[-1] + 0.1


def test_square_roi_matrix_rotation():
    # a 90-degree ROI: the ROI's x axis points down the source, so source +y maps to crop +x
    to_crop = square_roi_matrix(torch.tensor([[0.5, 0.5]]), torch.tensor([1.0]), torch.tensor([np.pi / 2]), 10)
    below = to_crop[0] @ torch.tensor([0.5, 0.6, 1.0])
    assert torch.allclose(below[:2], torch.tensor([5.5, 4.5]), atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Frozen adapters, gradients
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["mesh", "iris"])
def test_frozen_and_differentiable(which, request, tom):
    model = request.getfixturevalue(which)
    assert all(not p.requires_grad for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) > 500_000
    model.train()
    assert not any(m.training for m in model.modules())
    x = tom.clone().requires_grad_(True)
    model(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_eye_indices():
    assert len(MediaPipeIris.eye_indices) == 42 and max(MediaPipeIris.eye_indices) == 151
    assert set(IRIS_CENTRE_INDICES) <= set(MediaPipeIris.eye_indices)
    assert len(MediaPipeMesh.eye_indices) == 32 and max(MediaPipeMesh.eye_indices) < 468


# ------------------------------------------------------------------------------------------------
# The importer's op semantics
# ------------------------------------------------------------------------------------------------

def test_unknown_op_is_named():
    with pytest.raises(UnsupportedTFLiteOpError, match="FAKE_OP"):
        run_op("FAKE_OP", [torch.zeros(1, 1, 2, 2)], {}, {})
    spec = {"format": tflite_import.SPEC_FORMAT, "source": "toy.tflite", "inputs": [{"id": 0}],
            "outputs": [{"id": 1}], "ops": [{"type": "CUSTOM:Landmarks2TransformMatrix", "inputs": [0],
                                             "outputs": [1], "params": {}, "options": {}}]}
    with pytest.raises(UnsupportedTFLiteOpError, match="Landmarks2TransformMatrix.*toy.tflite"):
        TFLiteModule(spec, {})


def test_same_padding_is_tflite_style():
    # TensorFlow SAME: total = max((ceil(n/s) - 1) * s + k - n, 0), the odd pixel goes after
    assert tflite_import._same_padding(192, 3, 2, 1) == (0, 1)
    assert tflite_import._same_padding(5, 3, 2, 1) == (1, 1)
    assert tflite_import._same_padding(8, 3, 1, 1) == (1, 1)
    assert tflite_import._same_padding(8, 2, 2, 1) == (0, 0)
    # stride-2 3x3 SAME conv of an all-ones 4x4 image, all-ones kernel: the one padding row/column
    # goes after, so windows are rows/cols 0-2 and 2-4 -> sums 9, 6, 6, 4 (torch's symmetric
    # padding=1 would give 4, 6, 6, 9)
    y = run_op("CONV_2D", [torch.ones(1, 1, 4, 4)], {"weight": torch.ones(1, 1, 3, 3)},
               {"padding": "SAME", "stride": [2, 2], "dilation": [1, 1], "activation": "NONE"})
    assert y[0, 0].tolist() == [[9.0, 6.0], [6.0, 4.0]]


def test_axis_ops_translate_nhwc():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)  # NCHW
    # CONCATENATION on TFLite axis 3 (channels) -> torch dim 1
    y = run_op("CONCATENATION", [x, x], {}, {"axis": 3, "activation": "NONE"})
    assert y.shape == (2, 6, 2, 2) and torch.equal(y[:, 3:], x)
    y = run_op("CONCATENATION", [x, x], {}, {"axis": -3, "activation": "RELU6"})  # axis -3 = H
    assert y.shape == (2, 3, 4, 2) and y.max() == 6
    # PAD in NHWC order: two channels after
    y = run_op("PAD", [x], {}, {"paddings": [[0, 0], [0, 0], [0, 0], [0, 2]]})
    assert y.shape == (2, 5, 2, 2) and y[:, 3:].abs().sum() == 0
    # RESHAPE flattens in TFLite's NHWC element order, with a free batch
    y = run_op("RESHAPE", [x], {}, {"shape": [1, 12]})
    assert torch.equal(y, x.permute(0, 2, 3, 1).reshape(2, 12))
    # PRELU with a per-channel slope (C, 1, 1), fused-activation ADD
    alpha = torch.tensor([0.5, 1.0, 2.0]).reshape(3, 1, 1)
    y = run_op("PRELU", [-torch.ones(1, 3, 1, 1)], {"alpha": alpha}, {})
    assert y.flatten().tolist() == [-0.5, -1.0, -2.0]
    y = run_op("ADD", [x, -2 * x], {}, {"activation": "RELU"})
    assert y.abs().sum() == 0
