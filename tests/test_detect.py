"""Face detection: YuNet on real photos, keypoint order, alignment, empty images, error messages."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import need, read_rgb

from faceswap_pl.alignment import align_face, arcface_template, transform_points
from faceswap_pl.errors import FaceSwapError, UnknownNameError
from faceswap_pl.models.detectors import Face, InsightFaceDetector, YuNetDetector, create_detector


@pytest.fixture(scope="module")
def yunet() -> YuNetDetector:
    need("yunet")
    return create_detector("yunet")


@pytest.mark.parametrize("name, count", [("t1.jpg", 6), ("multi_face.jpg", 5)])
def test_finds_every_face(yunet, media, name, count):
    image = read_rgb(media(name))
    faces = yunet.detect(image)
    assert len(faces) == count
    scores = [f.score for f in faces]
    assert scores == sorted(scores, reverse=True)
    assert min(scores) >= yunet.score_threshold  # measured: 0.906 .. 0.943
    h, w = image.shape[:2]
    for face in faces:
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert 60 < face.width < 150  # the faces in both photos are ~80-110 px wide
        kx, ky = face.keypoints[:, 0], face.keypoints[:, 1]
        assert np.all((kx > x1) & (kx < x2) & (ky > y1) & (ky < y2))
        # ArcFace order with 'left' = image-left: eyes above nose above mouth, left before right
        assert face.keypoints[0, 0] < face.keypoints[1, 0] and face.keypoints[3, 0] < face.keypoints[4, 0]
        assert face.keypoints[:2, 1].max() < face.keypoints[2, 1] < face.keypoints[3:, 1].min()


def _template_error(face: Face, image: np.ndarray, order=(0, 1, 2, 3, 4)) -> np.ndarray:
    """Distances (5,) in px of the aligned keypoints from the 112-px template."""
    points = face.keypoints[list(order)]
    _, m = align_face(image, points, 112)
    return np.linalg.norm(transform_points(points, m) - arcface_template(112), axis=1)


def test_alignment_puts_eyes_on_template(yunet, media):
    eye_errors = []
    for name in ("t1.jpg", "multi_face.jpg"):
        image = read_rgb(media(name))
        for face in yunet.detect(image):
            eye_errors.extend(_template_error(face, image)[:2])
            # the same points in a wrong order (eyes and mouth corners swapped) fit far worse
            assert _template_error(face, image, order=(1, 0, 2, 4, 3))[:2].min() > 15
    eye_errors = np.array(eye_errors)
    # measured: median 2.7 px, max 10.4 px (the one strongly turned head in t1.jpg)
    assert np.median(eye_errors) < 4.0
    assert eye_errors.max() < 12.0


def test_aligned_crop_redetects_at_template(yunet, media):
    """Tom_Hanks_54745.png is an insightface-aligned 112 px crop: eyes land on the template."""
    faces = yunet.detect(read_rgb(media("Tom_Hanks_54745.png")))
    assert len(faces) == 1
    eyes = faces[0].keypoints[:2]
    # measured: 2.3 px and 1.1 px
    assert np.linalg.norm(eyes - arcface_template(112)[:2], axis=1).max() < 4.0


def test_large_image_is_downscaled_and_mapped_back(media):
    need("yunet")
    image = read_rgb(media("t1.jpg"))
    small = YuNetDetector().detect(image)
    big = YuNetDetector(max_side=1280).detect(cv2.resize(image, None, fx=2, fy=2))
    assert len(big) == len(small) == 6
    boxes_big = np.array(sorted(f.box.tolist() for f in big)) / 2
    boxes_small = np.array(sorted(f.box.tolist() for f in small))
    assert np.abs(boxes_big - boxes_small).max() < 3.0  # measured 0.8 px


@pytest.mark.parametrize("image", [np.zeros((480, 640, 3), np.uint8), np.full((300, 200, 3), 128, np.uint8),
                                   np.full((37, 53, 3), 255, np.uint8)])
def test_no_face_gives_empty_list(yunet, image):
    assert yunet.detect(image) == []


def test_bad_image_rejected(yunet):
    with pytest.raises(ValueError, match="uint8"):
        yunet.detect(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        yunet.detect(np.zeros((64, 64), np.uint8))


def test_unknown_detector_lists_names():
    with pytest.raises(UnknownNameError) as info:
        create_detector("retinaface")
    assert "'retinaface'" in str(info.value) and "yunet" in str(info.value) and "insightface:<dir>" in str(info.value)


def test_insightface_empty_dir_message(tmp_path):
    with pytest.raises(FaceSwapError) as info:
        create_detector(f"insightface:{tmp_path}")
    assert str(tmp_path) in str(info.value) and "det_*.onnx" in str(info.value)


def test_insightface_missing_dir_message(tmp_path):
    missing = tmp_path / "buffalo_l"
    with pytest.raises(FaceSwapError) as info:
        create_detector(f"insightface:{missing}")
    assert str(missing) in str(info.value) and "does not exist" in str(info.value)


def test_insightface_rejects_non_detector(tmp_path):
    """A recognizer saved under a detector's name is routed by insightface and refused clearly."""
    from test_onnx_encoder import tiny_recognizer

    tiny_recognizer(tmp_path / "det_10g.onnx")
    with pytest.raises(FaceSwapError) as info:
        InsightFaceDetector(tmp_path)
    assert "det_10g.onnx" in str(info.value) and "not an insightface face detector" in str(info.value)
