"""`faceswap-pl swap` end to end on the offline media: images, videos, face choice, face-free frames, smoothing,
backends, restoration and the bad inputs."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import save_training_checkpoint

from faceswap_pl.alignment import align_face
from faceswap_pl.cli import main
from faceswap_pl.inference.masks import DEFAULT_RULE, hull_mask
from faceswap_pl.inference.pipeline import FaceSwapper, SwapModel, to_tensor
from faceswap_pl.models.detectors import Face, create_detector

TINY = dict(backbone="unet", num_aad_blocks=1, image_size=64, width=0.125, d_ndf=8, d_layers=3, d_scales=2)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained tiny generator as a training checkpoint and as an export (safetensors + ONNX)."""
    from faceswap_pl.export import export_generator
    from faceswap_pl.training.module import FaceSwapModule

    root = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    checkpoint = save_training_checkpoint(FaceSwapModule(**TINY), root / "tiny.ckpt")
    export_generator(checkpoint, root / "export")
    return {"checkpoint": checkpoint, "export": root / "export"}


@pytest.fixture(scope="module")
def images(media):
    from faceswap_pl.imageio import read_image

    return {name: read_image(media(name)) for name in ("Tom_Hanks_54745.png", "single_face.jpg", "multi_face.jpg")}


@pytest.fixture(scope="module")
def detector():
    return create_detector("yunet")


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a != b, axis=2)


def test_image_swap_changes_only_the_masked_face(tiny_model, images, detector):
    from faceswap_pl.models.landmarks.mediapipe import MediaPipeMesh

    model = SwapModel.load(tiny_model["export"])
    target = images["single_face.jpg"]
    swapper = FaceSwapper(model, images["Tom_Hanks_54745.png"], detector=detector, mask="hull")
    out = swapper.swap_image(target)
    assert swapper.stats.faces == 1 and out.shape == target.shape and out is not target
    # where the mask is zero nothing changed: rebuild the mask and warp it into the image, dilated by 2 px
    face = max(detector(target), key=lambda f: f.area)
    crop, matrix = align_face(target, face.keypoints, 64)
    points = MediaPipeMesh()(to_tensor([crop], "cpu"))[0].numpy()
    support = cv2.warpAffine((hull_mask(points, 64, DEFAULT_RULE) > 0).astype(np.uint8),
                             cv2.invertAffineTransform(matrix), target.shape[1::-1], flags=cv2.INTER_LINEAR)
    support = cv2.dilate(support, np.ones((5, 5), np.uint8)) > 0
    changed = _changed(out, target)
    assert changed.sum() > 1000 and not np.any(changed & ~support)
    x0, y0, x1, y1 = face.box.astype(int)
    assert changed[y0:y1, x0:x1].mean() > 0.3  # the face itself is replaced


def test_checkpoint_export_and_onnx_backends_agree(tiny_model, images, detector):
    source, target = images["Tom_Hanks_54745.png"], images["single_face.jpg"]
    outputs = []
    for path, backend in ((tiny_model["checkpoint"], "torch"), (tiny_model["export"], "torch"),
                          (tiny_model["export"], "onnxruntime")):
        swapper = FaceSwapper(SwapModel.load(path, backend=backend), source, detector=detector, mask="hull")
        outputs.append(swapper.swap_image(target).astype(int))
    assert np.abs(outputs[0] - outputs[1]).max() == 0
    assert np.abs(outputs[1] - outputs[2]).max() <= 2


def test_reference_face_selects_one_person(tiny_model, images, detector):
    group = images["multi_face.jpg"]
    faces = detector(group)
    assert len(faces) == 5
    chosen = faces[2]
    x0, y0, x1, y1 = chosen.box.astype(int)
    w, h = x1 - x0, y1 - y0
    reference = cv2.resize(group[max(0, y0 - h):y1 + h, max(0, x0 - w):x1 + w, :][:, ::-1], None, fx=1.4, fy=1.4)
    swapper = FaceSwapper(SwapModel.load(tiny_model["export"]), images["Tom_Hanks_54745.png"], detector=detector,
                          reference=np.ascontiguousarray(reference), mask="hull")
    changed = _changed(swapper.swap_image(group), group)
    inside = [changed[int(f.box[1]):int(f.box[3]), int(f.box[0]):int(f.box[2])].mean() for f in faces]
    assert inside[2] > 0.3 and all(v == 0 for i, v in enumerate(inside) if i != 2)
    everyone = FaceSwapper(SwapModel.load(tiny_model["export"]), images["Tom_Hanks_54745.png"], detector=detector,
                           all_faces=True, mask="hull")
    changed = _changed(everyone.swap_image(group), group)
    assert all(changed[int(f.box[1]):int(f.box[3]), int(f.box[0]):int(f.box[2])].mean() > 0.2 for f in faces)


def test_reference_person_absent_means_nothing_is_swapped(tiny_model, images, media, detector):
    """At the default threshold the reference person (the demo video's man, from his still) is found in a video
    frame (FaceNet cosine 0.78-0.81) and in none of five strangers (at most 0.36)."""
    from faceswap_pl.inference.media import read_frames

    swapper = FaceSwapper(SwapModel.load(tiny_model["export"]), images["Tom_Hanks_54745.png"], detector=detector,
                          reference=images["single_face.jpg"], mask="hull")
    group = images["multi_face.jpg"]
    assert swapper.swap_image(group) is group and swapper.stats.faces == 0
    frame = next(read_frames(media("single_face.mp4")))
    assert _changed(swapper.swap_image(frame), frame).sum() > 1000 and swapper.stats.faces == 1


def test_video_swap_keeps_frame_count_rate_and_audio(tiny_model, images, media, tmp_path):
    from faceswap_pl.inference.media import SYNTHETIC_TAG, probe_video, read_frames, video_tag

    assert main(["swap", "--source", str(media("Tom_Hanks_54745.png")), "--target", str(media("single_face.mp4")),
                 "--model", str(tiny_model["export"]), "--out", str(tmp_path / "swapped.mp4")]) == 0
    written, original = probe_video(tmp_path / "swapped.mp4"), probe_video(media("single_face.mp4"))
    assert (written.frames, written.fps, written.width, written.height) == (72, Fraction(30), 640, 360)
    assert written.has_audio and written.audio_codec == original.audio_codec
    assert video_tag(tmp_path / "swapped.mp4") == SYNTHETIC_TAG
    first = next(read_frames(tmp_path / "swapped.mp4"))
    face = max(create_detector("yunet")(next(read_frames(media("single_face.mp4")))), key=lambda f: f.area)
    x0, y0, x1, y1 = face.box.astype(int)
    difference = np.abs(first.astype(int) - next(read_frames(media("single_face.mp4"))).astype(int)).mean(2)
    assert difference[y0:y1, x0:x1].mean() > 5 * difference[:, : x0 - 20].mean()


def _spliced(media, before: int = 8, gap: int = 5, after: int = 8) -> list[np.ndarray]:
    from faceswap_pl.inference.media import read_frames

    faces = list(read_frames(media("single_face.mp4"), before + after))
    empty = [cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA) for f in read_frames(media("no_face.mp4"), gap)]
    return faces[:before] + empty + faces[before:]


def test_face_free_frames_pass_through_and_faces_realign_after_them(tiny_model, images, media, detector, tmp_path):
    frames = _spliced(media)
    assert all(not detector(f) for f in frames[8:13]) and all(detector(f) for f in frames[:8] + frames[13:])
    swapper = FaceSwapper(SwapModel.load(tiny_model["export"]), images["Tom_Hanks_54745.png"], detector=detector,
                          smooth=2, batch_size=4)
    outputs = list(swapper.swap_frames(iter(frames)))
    assert len(outputs) == len(frames)
    assert all(outputs[i] is frames[i] for i in range(8, 13))  # untouched, not even re-encoded in memory
    assert all(_changed(outputs[i], frames[i]).sum() > 500 for i in list(range(8)) + list(range(13, 21)))
    assert len(swapper.stats.tracks) == 2 and swapper.stats.faces == 16
    # the same through the video writer: frame count kept
    import av

    from faceswap_pl.inference.media import probe_video, transcode

    clip = tmp_path / "spliced.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    swapper = FaceSwapper(SwapModel.load(tiny_model["export"]), images["Tom_Hanks_54745.png"], detector=detector)
    assert transcode(clip, tmp_path / "out.mp4", swapper.swap_frames).frames == len(frames)
    assert probe_video(tmp_path / "out.mp4").frames == len(frames) and swapper.stats.faces == 16


class _NoisyDetector:
    """YuNet on the first frame, then the same face with seeded keypoint noise: a still video seen by a jittery
    detector."""

    def __init__(self, image: np.ndarray, sigma: float, seed: int = 0) -> None:
        self.face = max(create_detector("yunet")(image), key=lambda f: f.area)
        self.rng = np.random.default_rng(seed)
        self.sigma = sigma

    def __call__(self, image: np.ndarray) -> list[Face]:
        noise = self.rng.normal(0, self.sigma, size=2)  # the whole face shifts, as detector jitter does
        return [Face(self.face.box + np.tile(noise, 2), self.face.score, self.face.keypoints + noise)]


def test_smoothing_lowers_the_temporal_jitter(images):
    from faceswap_pl.metrics.evaluator import FaceEvaluator

    still = images["single_face.jpg"]
    source_crop = align_face(images["Tom_Hanks_54745.png"],
                             max(create_detector("yunet")(images["Tom_Hanks_54745.png"]), key=lambda f: f.area)
                             .keypoints, 128)[0]
    fixed = to_tensor([source_crop], "cpu")
    # a "generator" that always draws the source face: where it lands in the frame is decided by the alignment only
    class Flat(torch.nn.Flatten):  # an "identity encoder" whose features are the pixels
        def features(self, x, resize):
            return self(x)

    model = SwapModel(lambda target, embedding: fixed.expand(len(target), -1, -1, -1), Flat(), 128, "constant")
    evaluator = FaceEvaluator(recognizer=torch.nn.Identity())
    keypoints = _NoisyDetector(still, 0).face.keypoints
    jitter = {}
    for radius in (0, 2):
        swapper = FaceSwapper(model, images["Tom_Hanks_54745.png"], detector=_NoisyDetector(still, 1.5),
                              smooth=radius, mask="hull")
        frames = list(swapper.swap_frames([still] * 16))
        crops = to_tensor([align_face(f, keypoints, 128)[0] for f in frames], "cpu")
        targets = to_tensor([align_face(still, keypoints, 128)[0]] * 16, "cpu")
        jitter[radius] = evaluator.jitter(crops, targets)
    assert jitter[2] < 0.6 * jitter[0], jitter


def test_realesrgan_restores_large_faces(tiny_model, images, detector):
    from faceswap_pl.inference.swap_files import load_restorer

    model = SwapModel.load(tiny_model["export"])
    plain = FaceSwapper(model, images["Tom_Hanks_54745.png"], detector=detector, mask="hull")
    restored = FaceSwapper(model, images["Tom_Hanks_54745.png"], detector=detector, mask="hull",
                           restorer=load_restorer("realesrgan"))
    target = images["single_face.jpg"]
    a, b = plain.swap_image(target), restored.swap_image(target)
    face = max(detector(target), key=lambda f: f.area)
    assert face.width > 64  # larger than the 64-px crop: restoration applies
    x0, y0, x1, y1 = face.box.astype(int)
    assert np.abs(a.astype(int) - b.astype(int))[y0:y1, x0:x1].mean() > 1
    # sharper: more high-frequency energy in the pasted face than the bilinear upscale of the 64-px crop
    lap = lambda x: cv2.Laplacian(cv2.cvtColor(x[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()  # noqa: E731
    assert lap(b) > lap(a)


def test_trained_restorer_runs_on_every_crop(tiny_model, media, tmp_path):
    from faceswap_pl.imageio import read_image
    from faceswap_pl.models.restoration import FaceRestorer, save_restorer

    torch.manual_seed(0)
    restorer = FaceRestorer(width=8, depth=2, blocks=1)
    with torch.no_grad():
        for p in restorer.parameters():
            p.add_(0.05 * torch.randn_like(p))  # not the identity
    save_restorer(restorer, tmp_path / "restorer.safetensors")
    common = ["swap", "--source", str(media("Tom_Hanks_54745.png")), "--target", str(media("single_face.jpg")),
              "--model", str(tiny_model["export"]), "--mask", "hull"]
    assert main([*common, "--out", str(tmp_path / "plain.png")]) == 0
    assert main([*common, "--out", str(tmp_path / "restored.png"), "--sr", str(tmp_path / "restorer.safetensors")]) == 0
    plain, restored = read_image(tmp_path / "plain.png"), read_image(tmp_path / "restored.png")
    target = read_image(media("single_face.jpg"))
    changed = _changed(plain, target)
    assert np.abs(plain.astype(int) - restored.astype(int))[changed].mean() > 1
    # the same mask: the restored swap changes nothing outside what the plain swap changed (dilated by 2 px)
    near = cv2.dilate(changed.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert not np.any(_changed(restored, target) & ~near)


# ------------------------------------------------------------------------------------------------ CLI and errors

def test_cli_folder_of_targets_and_tags(tiny_model, media, tmp_path, capsys):
    from faceswap_pl.inference.media import SYNTHETIC_TAG, image_tag

    folder = tmp_path / "targets"
    folder.mkdir()
    for name in ("single_face.jpg", "multi_face.jpg"):
        (folder / name).write_bytes(media(name).read_bytes())
    (folder / "notes.txt").write_text("ignored")
    assert main(["swap", "--source", str(media("Tom_Hanks_54745.png")), "--target", str(folder),
                 "--model", str(tiny_model["export"]), "--out", str(tmp_path / "out"), "--mask", "none"]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["multi_face.jpg", "single_face.jpg"]
    assert image_tag(tmp_path / "out" / "single_face.jpg") == SYNTHETIC_TAG
    assert "2 file(s)" in capsys.readouterr().out


@pytest.mark.parametrize("case, expected", [
    ("no_face_source", "No face was found in the source image"),
    ("corrupt_source", "is not a readable image"),
    ("missing_model", "does not exist; pass a training checkpoint"),
    ("empty_video", "is empty (0 bytes)"),
    ("text_video", "cannot be read"),
    ("folder_out_for_one_file", "must be a file name ending in"),
    ("onnx_of_checkpoint", "needs an export folder with generator.onnx"),
    ("missing_sr", "no such restoration model"),
    ("bad_smooth", "is not a whole number >= 0"),
    ("no_cuda", "this torch sees no CUDA GPU"),
    ("name_clash", "Several targets would be written to the same output (x.jpg)"),
])
def test_bad_inputs_fail_with_one_sentence(case, expected, tiny_model, media, tmp_path, capsys):
    source, target = str(media("Tom_Hanks_54745.png")), str(media("single_face.jpg"))
    model, out = str(tiny_model["export"]), str(tmp_path / "out.png")
    extra = []
    if case == "no_face_source":
        from faceswap_pl.inference.media import read_frames, write_image

        source = str(write_image(tmp_path / "empty.png", next(read_frames(media("no_face.mp4")))))
    elif case == "corrupt_source":
        (tmp_path / "broken.jpg").write_bytes(media("single_face.jpg").read_bytes()[:200])
        source = str(tmp_path / "broken.jpg")
    elif case == "missing_model":
        model = str(tmp_path / "nowhere")
    elif case in ("empty_video", "text_video"):
        target, out = str(tmp_path / "clip.mp4"), str(tmp_path / "out.mp4")
        Path(target).write_bytes(b"" if case == "empty_video" else b"hello\n" * 100)
    elif case == "folder_out_for_one_file":
        out = str(tmp_path)
    elif case == "onnx_of_checkpoint":
        model, extra = str(tiny_model["checkpoint"]), ["--backend", "onnxruntime"]
    elif case == "missing_sr":
        extra = ["--sr", str(tmp_path / "restorer.ckpt")]
    elif case == "bad_smooth":
        extra = ["--smooth", "-1"]
    elif case == "no_cuda":
        if torch.cuda.is_available():
            pytest.skip("a CUDA GPU is present")
        extra = ["--device", "cuda"]
    elif case == "name_clash":
        folder = tmp_path / "targets"
        folder.mkdir()
        for name in ("x.jpg", "x.jpeg"):
            (folder / name).write_bytes(media("single_face.jpg").read_bytes())
        target, out = str(folder), str(tmp_path / "swapped")
    argv = ["swap", "--source", source, "--target", target, "--model", model, "--out", out, *extra]
    if case == "bad_smooth":
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    else:
        assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert expected in err[-1] and len(err[-1].split(". ")) <= 2
    assert not Path(out).is_file()
    assert not list(tmp_path.glob(".*partial*"))
