"""YuNet (OpenCV zoo, 2023mar) through ``cv2.FaceDetectorYN``: the zoo's detector (``yunet``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from faceswap_pl import zoo
from faceswap_pl.errors import ModelFileError
from faceswap_pl.models.detectors.base import Face, FaceDetector, by_score, check_image, register_detector

YUNET_FILE = "face_detection_yunet_2023mar.onnx"


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
        if model_path is None:
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
        image = check_image(image_rgb)
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
        return by_score(faces)


register_detector("yunet", YuNetDetector)
