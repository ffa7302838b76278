"""Face detection: boxes, scores and the 5 ArcFace keypoints, behind one interface.

Every detector takes an RGB uint8 image (H, W, 3) of any size and returns :class:`Face` records in
image pixels, sorted by score (highest first). Keypoints come in ArcFace template order — left eye,
right eye, nose tip, left mouth corner, right mouth corner, where "left" means the image-left side
(the subject's right) — so :func:`faceswap_pl.alignment.align_face` can use them directly.

Names for :func:`create_detector`:
    ``yunet``               OpenCV zoo YuNet 2023mar through ``cv2.FaceDetectorYN`` (zoo)
    ``insightface:<dir>``   SCRFD (``det_*.onnx``) from a local insightface model pack directory
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceswap_pl.errors import UnknownNameError
from faceswap_pl.models.onnx_import import ModelFileError

YUNET_FILE = "face_detection_yunet_2023mar.onnx"


@dataclass(eq=False)
class Face:
    """One detected face in image pixels.

    Attributes:
        box: (4,) float32 ``x1, y1, x2, y2`` (top-left and bottom-right corners, pixels).
        score: detection confidence in [0, 1].
        keypoints: (5, 2) float32 ``(x, y)`` pixels in ArcFace order: left eye, right eye, nose,
            left mouth corner, right mouth corner ("left" = image-left).
    """

    box: np.ndarray
    score: float
    keypoints: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        self.box = np.asarray(self.box, dtype=np.float32).reshape(4)
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32).reshape(5, 2)
        self.score = float(self.score)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)


def _check_image(image: np.ndarray) -> np.ndarray:
    """Validate an RGB uint8 (H, W, 3) image; returns it C-contiguous."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"detectors expect an RGB image of shape (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"detectors expect a uint8 image, got {image.dtype}")
    return np.ascontiguousarray(image)


class FaceDetector:
    """Interface: ``detect(image_rgb (H, W, 3) uint8) -> list[Face]`` sorted by score, descending."""

    def detect(self, image_rgb: np.ndarray) -> list[Face]:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, image_rgb: np.ndarray) -> list[Face]:
        return self.detect(image_rgb)


def _sorted(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: f.score, reverse=True)


# --------------------------------------------------------------------------------------------------
# YuNet


def convert_yunet(raw_dir: Path, out_dir: Path) -> None:
    """Zoo converter: copy the YuNet ONNX and check that ``cv2.FaceDetectorYN`` loads and runs it."""
    target = Path(out_dir) / YUNET_FILE
    shutil.copy2(Path(raw_dir) / YUNET_FILE, target)
    detector = YuNetDetector(target)
    detector.detect(np.zeros((160, 160, 3), np.uint8))


class YuNetDetector(FaceDetector):
    """YuNet (OpenCV zoo, 2023mar) through ``cv2.FaceDetectorYN``.

    The network input size is set to each image's size (YuNet is fully convolutional); images whose
    longer side exceeds ``max_side`` are downscaled first and the results scaled back.

    Args:
        model_path: the YuNet ``.onnx`` file (default: the zoo's).
        score_threshold: minimum face score (0..1).
        nms_threshold: IoU above which overlapping boxes are suppressed.
        top_k: boxes kept before NMS.
        max_side: longest image side the network sees (None: never downscale).
    """

    def __init__(self, model_path: str | Path | None = None, score_threshold: float = 0.6,
                 nms_threshold: float = 0.3, top_k: int = 5000, max_side: int | None = 1920):
        import cv2

        if model_path is None:
            from faceswap_pl import zoo

            model_path = zoo.require("yunet") / YUNET_FILE
        model_path = Path(model_path).expanduser()
        if not model_path.is_file():
            raise ModelFileError(f"The YuNet model '{model_path}' does not exist.")
        self.model_path = str(model_path)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_side = max_side
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # OpenCV 5 warns about targets
        try:
            self._net = cv2.FaceDetectorYN.create(self.model_path, "", (320, 320), self.score_threshold,
                                                  self.nms_threshold, int(top_k))
        finally:
            cv2.utils.logging.setLogLevel(level)

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        import cv2

        image = _check_image(image_rgb)
        height, width = image.shape[:2]
        scale = 1.0
        if self.max_side is not None and max(height, width) > self.max_side:
            scale = self.max_side / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, rows = self._net.detect(bgr)
        if rows is None:
            return []
        faces = []
        # row: x, y, w, h, then 5 (x, y) points (image-left eye first, as ArcFace), then score
        for row in np.asarray(rows, dtype=np.float64):
            x, y, w, h = row[:4] / scale
            faces.append(Face(box=(x, y, x + w, y + h), score=row[14], keypoints=row[4:14].reshape(5, 2) / scale))
        return _sorted(faces)


# --------------------------------------------------------------------------------------------------
# insightface SCRFD


class InsightFaceDetector(FaceDetector):
    """SCRFD (or RetinaFace) from a local insightface model pack, e.g. ``buffalo_l/det_10g.onnx``.

    Loaded with ``insightface.model_zoo.get_model(path)`` on an onnxruntime session with one intra-op
    thread and no spinning. insightface detectors take BGR images and already return keypoints in
    ArcFace order.

    Args:
        model_dir: the model pack directory (the ``det_*.onnx`` file in it is used; with several,
            the first in name order), or a path to a detector ``.onnx`` file itself.
        score_threshold: minimum face score.
        nms_threshold: NMS IoU threshold.
        input_size: (width, height) the image is letterboxed into.
        threads: onnxruntime intra-op threads.
    """

    def __init__(self, model_dir: str | Path, score_threshold: float = 0.5, nms_threshold: float = 0.4,
                 input_size: tuple[int, int] = (640, 640), threads: int = 1):
        self.model_path = self._find_model(Path(model_dir).expanduser())
        self.score_threshold = float(score_threshold)
        self.input_size = tuple(int(v) for v in input_size)
        self._model = self._load(self.model_path, threads)
        self._model.prepare(ctx_id=-1, input_size=self.input_size, det_thresh=self.score_threshold,
                            nms_thresh=float(nms_threshold))

    @staticmethod
    def _find_model(path: Path) -> Path:
        if path.is_file():
            return path
        if not path.is_dir():
            raise ModelFileError(f"The insightface model directory '{path}' does not exist; pass the folder of a "
                                 f"model pack (e.g. ~/.insightface/models/buffalo_l) holding det_*.onnx.")
        candidates = sorted(path.glob("det_*.onnx"))
        if not candidates:
            found = ", ".join(sorted(p.name for p in path.iterdir())) or "nothing"
            raise ModelFileError(f"The insightface model directory '{path}' holds no detector file det_*.onnx "
                                 f"(found: {found}).")
        return candidates[0]

    @staticmethod
    def _load(model_path: Path, threads: int):
        from insightface.model_zoo import get_model

        from faceswap_pl.models.onnx_import import ort_session_options

        try:
            model = get_model(str(model_path), providers=["CPUExecutionProvider"],
                              sess_options=ort_session_options(threads))
        except Exception as exc:  # DecodeError, ORT load failures, routing assertions
            raise ModelFileError(f"The insightface detector '{model_path}' could not be loaded "
                                 f"({type(exc).__name__}: {exc}).") from exc
        if model is None or not hasattr(model, "detect") or getattr(model, "taskname", "") != "detection":
            kind = type(model).__name__ if model is not None else "an unrecognised model"
            raise ModelFileError(f"The file '{model_path}' is {kind}, not an insightface face detector.")
        return model

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        image = _check_image(image_rgb)
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        boxes, keypoints = self._model.detect(bgr, input_size=self.input_size, max_num=0)
        if boxes is None or len(boxes) == 0:
            return []
        if keypoints is None:
            raise ModelFileError(f"The insightface detector '{self.model_path}' returns no keypoints; "
                                 f"face alignment needs a detector with 5 keypoints (SCRFD *_kps / det_*).")
        faces = [Face(box=b[:4], score=b[4], keypoints=k) for b, k in zip(boxes, keypoints)]
        return _sorted(faces)


# --------------------------------------------------------------------------------------------------
# registry


def detector_names() -> list[str]:
    """Valid names for :func:`create_detector`."""
    return ["yunet", "insightface:<dir>"]


def create_detector(name: str, **kwargs) -> FaceDetector:
    """Build a detector by name (see the module docstring); kwargs go to its constructor."""
    if name == "yunet":
        return YuNetDetector(**kwargs)
    if name.startswith("insightface:"):
        return InsightFaceDetector(name[len("insightface:"):], **kwargs)
    raise UnknownNameError(f"Unknown face detector '{name}'; valid names: {', '.join(detector_names())}.")
