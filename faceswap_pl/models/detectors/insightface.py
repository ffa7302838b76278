"""SCRFD (or RetinaFace) from a local insightface model pack: ``insightface:<dir>``.

``insightface`` itself is imported when a detector is built, not with this module: importing it costs about
2.7 s on a 2-core CPU (after torch), and most runs never use it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceswap_pl.errors import ModelFileError
from faceswap_pl.models.detectors.base import DETECTORS, Face, FaceDetector, by_score, check_image
from faceswap_pl.models.importers.onnx import ort_session_options


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
        try:
            from insightface.model_zoo import get_model  # lazy: see the module docstring
        except ImportError as error:
            raise ModelFileError(f"The detector 'insightface:{model_path.parent}' needs the insightface package "
                                 f"({error}); install it with: pip install 'faceswap-pl[insightface]' && "
                                 f"pip install --no-deps 'insightface>=0.7.3,<3' (or use --detector yunet).") from None

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
        image = check_image(image_rgb)
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        boxes, keypoints = self._model.detect(bgr, input_size=self.input_size, max_num=0)
        if boxes is None or len(boxes) == 0:
            return []
        if keypoints is None:
            raise ModelFileError(f"The insightface detector '{self.model_path}' returns no keypoints; "
                                 f"face alignment needs a detector with 5 keypoints (SCRFD *_kps / det_*).")
        faces = [Face(box=b[:4], score=b[4], keypoints=k) for b, k in zip(boxes, keypoints)]
        return by_score(faces)


DETECTORS.register_prefix("insightface:", InsightFaceDetector, placeholder="<dir>")
