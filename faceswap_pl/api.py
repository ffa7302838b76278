"""The Python API: swapping, evaluating and exporting in a few lines, with the command line's behaviour.

A model is a ``faceswap-pl fit`` checkpoint (``.ckpt``), a ``faceswap-pl export`` folder, GHOST's released
``G_*.pth`` or an MLflow URI of one (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/RUN_ID/PATH``)::

    from faceswap_pl import Swapper

    swapper = Swapper.load("models:/demo-generator@champion", tracking_uri="sqlite:///mlruns.db")
    swapped = swapper.swap_image("me.jpg", "photo.jpg", out="swapped.png")  # the RGB uint8 image, also written
    swapper.swap_video("me.jpg", "clip.mp4", out="swapped.mp4")  # streamed, audio kept

Images are paths or RGB ``uint8`` arrays of shape (H, W, 3). :func:`evaluate` and :func:`export_checkpoint` are the
``evaluate`` and ``export`` commands. Every failure a caller can cause is a :class:`~faceswap_pl.errors.FaceSwapError`
naming the thing and the fix.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from faceswap_pl.errors import FaceSwapError
from faceswap_pl.export import export_generator, register_export
from faceswap_pl.imageio import read_image
from faceswap_pl.inference.evaluate import evaluate_checkpoint
from faceswap_pl.inference.media import write_image
from faceswap_pl.inference.options import DEFAULT_THRESHOLD
from faceswap_pl.inference.pipeline import FaceSwapper, SwapModel
from faceswap_pl.inference.swap_files import check_device, load_restorer, swap_files, targets_of

Image = str | Path | np.ndarray


def _image(image: Image, what: str) -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise FaceSwapError(f"The {what} array must be RGB uint8 of shape (H, W, 3), got {image.dtype} "
                                f"{tuple(image.shape)}; convert it (e.g. cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).")
        return image
    return read_image(image, what)


class Swapper:
    """A loaded generator with the swap settings of ``faceswap-pl swap``.

    Args:
        model: the generator (:meth:`load` makes one from a path or URI).
        detector: ``yunet`` (default) or ``insightface:<model pack dir>``.
        mask: ``adaptive`` (GHOST's rule per track), ``hull`` or ``none``.
        smooth: keypoint smoothing over +-N frames within a track (videos).
        all_faces: swap every detected face instead of the largest.
        threshold: similarity a face needs to the ``target_face`` of a call to be swapped.
        sr: super-resolution of the swapped crops: ``none``, ``realesrgan`` or a restoration checkpoint.
        batch_size: crops per generator call.
        device: torch device.
    """

    def __init__(self, model: SwapModel, *, detector: str = "yunet", mask: str = "adaptive", smooth: int = 2,
                 all_faces: bool = False, threshold: float = DEFAULT_THRESHOLD, sr: str = "none",
                 batch_size: int = 8, device: str = "cpu") -> None:
        check_device(device)
        self.model = model
        self.options = dict(detector=detector, mask=mask, smooth=smooth, all_faces=all_faces, threshold=threshold,
                            batch_size=batch_size, device=device, restore_large_only=sr == "realesrgan")
        self.restorer = load_restorer(sr, device)
        self._last: tuple[str, FaceSwapper] | None = None  # the swapper of the last source (its embedding)

    @classmethod
    def load(cls, model: str | Path, *, backend: str = "torch", device: str = "cpu",
             identity_weights: str | None = None, tracking_uri: str | None = None, **options: Any) -> "Swapper":
        """Load ``model`` (a path or an MLflow URI, see the module docstring); ``options`` as in the constructor.

        ``backend="onnxruntime"`` runs an export folder's ``generator.onnx``; ``identity_weights`` is the ArcFace
        ``backbone.pth`` GHOST's generators need; ``tracking_uri`` is the store URIs are looked up in (default
        ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns.db``).
        """
        check_device(device)
        swap_model = SwapModel.load(model, backend=backend, device=device, identity_weights=identity_weights,
                                    tracking_uri=tracking_uri)
        return cls(swap_model, device=device, **options)

    def _swapper(self, source: Image, target_face: Image | None) -> FaceSwapper:
        source_rgb = _image(source, "source image")
        reference = _image(target_face, "reference image (target_face)") if target_face is not None else None
        key = hashlib.sha256(source_rgb.tobytes() + str(source_rgb.shape).encode()
                             + (reference.tobytes() if reference is not None else b"")).hexdigest()
        if self._last is None or self._last[0] != key:
            swapper = FaceSwapper(self.model, source_rgb, reference=reference, restorer=self.restorer,
                                  **self.options)
            self._last = key, swapper
        return self._last[1]

    def swap_image(self, source: Image, target: Image, out: str | Path | None = None, *,
                   target_face: Image | None = None) -> np.ndarray:
        """The target image with the source's face swapped in (RGB uint8); written to ``out`` (.png/.jpg) if given,
        tagged as synthetic. A target without a face comes back unchanged."""
        swapped = self._swapper(source, target_face).swap_image(_image(target, "target image"))
        if out is not None:
            write_image(out, swapped)
        return swapped

    def swap_video(self, source: Image, target: str | Path, out: str | Path, *,
                   target_face: Image | None = None) -> dict[str, Any]:
        """Swap into every frame of a video, streamed, audio, frame rate and count kept; returns
        ``{"target", "output", "frames", "faces", "seconds"}``."""
        (result,) = self.swap(source, target, out, target_face=target_face)
        return result

    def swap(self, source: Image, target: str | Path, out: str | Path, *,
             target_face: Image | None = None) -> list[dict[str, Any]]:
        """``faceswap-pl swap``: an image, a video or a folder of them into ``out`` (a file for one target, a
        folder for a folder); one result per file."""
        targets = targets_of(Path(target))
        return swap_files(self._swapper(source, target_face), targets, Path(out))


def evaluate(model: str | Path, pairs: str, out: str | Path = "evaluation", **options: Any) -> dict[str, Any]:
    """``faceswap-pl evaluate``: the metrics of ``model`` (path or URI) on fixed pairs of the shards ``pairs``;
    writes ``report.json`` / ``report.md`` / grids to ``out`` and returns the report. ``options``: ``num_pairs``,
    ``batch_size``, ``recognizer``, ``worst``, ``device``, ``identity_weights``, ``tracking_uri``, ``pairs_file``."""
    return evaluate_checkpoint(model, pairs, out, **options)


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, register: str | None = None, run_id: str | None = None,
           tracking_uri: str | None = None, **options: Any) -> dict[str, Any]:
    """``faceswap-pl export``: the generator of a ``.ckpt`` as safetensors (+ ONNX, checked) and a model card in
    ``out``; with ``register``, also a new version of that registered model (alias ``champion``), loadable as
    ``models:/<register>@champion``. ``options``: ``opset``, ``onnx``, ``tolerance``. Returns the export's
    description, with ``"registered"`` when registered."""
    info = export_generator(checkpoint, out, run_id=run_id, tracking_uri=tracking_uri, **options)
    if register:
        info["registered"] = register_export(info["out_dir"], register, run_id=run_id, tracking_uri=tracking_uri)
    return info
