"""The swap pipeline's parts with known answers: masks, the adaptive rule, tracks and smoothing, paste-back, media I/O."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from faceswap_pl.alignment import alignment_matrix, arcface_template
from faceswap_pl.inference.masks import (
    LEFT_JAW,
    REFERENCE_SIZE,
    RIGHT_JAW,
    MaskRule,
    adaptive_rule,
    hull_mask,
    jaw_offset,
)
from faceswap_pl.inference.pipeline import paste_back
from faceswap_pl.inference.smoothing import KeypointSmoother
from faceswap_pl.models.detectors import Face
from faceswap_pl.models.landmarks.topology import MESH_FACE_OVAL


def _oval_points(radius: float = 0.3) -> np.ndarray:
    """(468, 2) unit points: the face-oval indices on a circle of ``radius`` around the centre, others at the centre."""
    points = np.full((468, 2), 0.5)
    angles = np.linspace(0, 2 * np.pi, len(MESH_FACE_OVAL), endpoint=False)
    points[list(MESH_FACE_OVAL)] = 0.5 + radius * np.stack([np.sin(angles), -np.cos(angles)], 1)
    return points


# ------------------------------------------------------------------------------------------------ masks

@pytest.mark.parametrize("offset, rule", [(7.0, MaskRule(-15, 15, 10)), (6.0, MaskRule(-10, 10, 8)),
                                          (3.5, MaskRule(-10, 10, 8)), (3.0, MaskRule(-5, 5, 5)),
                                          (0.0, MaskRule(-5, 5, 5)), (-3.0, MaskRule(-5, 5, 5)),
                                          (-3.5, MaskRule(5, 5, 10))])
def test_adaptive_rule_table(offset, rule):
    assert adaptive_rule(offset) == rule


def test_jaw_offset_sign_follows_the_face_width():
    target = _oval_points()
    narrower = target.copy()
    narrower[list(LEFT_JAW), 0] += 2 / REFERENCE_SIZE  # the swap's image-left jaw 2 px further in
    assert jaw_offset(narrower, target) == pytest.approx(6.0)
    wider = target.copy()
    wider[list(LEFT_JAW), 0] -= 2 / REFERENCE_SIZE
    wider[list(RIGHT_JAW), 0] += 2 / REFERENCE_SIZE  # 2 px further out on both sides
    assert jaw_offset(wider, target) == pytest.approx(-6.0)
    assert adaptive_rule(jaw_offset(wider, target)).grow > 0 > adaptive_rule(jaw_offset(narrower, target)).grow
    assert jaw_offset(target, target) == 0


def test_hull_mask_edge_profile_and_border():
    size, rule = 224, MaskRule(-5, 5, 5)
    mask = hull_mask(_oval_points(0.3), size, rule)
    assert mask.shape == (size, size) and mask.dtype == np.float32
    assert mask[112, 112] == pytest.approx(1.0) and 0 <= mask.min() and mask.max() <= 1
    border = 2 * rule.blur_y
    assert mask[:border].max() == 0 and mask[:, -border:].max() == 0
    # along a ray from the centre: 1 inside, a monotone Gaussian edge (sigma 5) around the eroded hull, 0 outside
    ray = mask[112, 112:]
    assert np.all(np.diff(ray) <= 1e-6)
    edge = 0.3 * size - abs(rule.grow) // 2  # a 5x5 erosion moves the edge in by 2 px
    half = int(np.argmin(np.abs(ray - 0.5)))
    assert abs(half - edge) <= 2.5
    assert ray[int(edge) - 15] > 0.99 and ray[int(edge) + 15] < 0.01  # 3 sigmas either side
    assert 0.05 < ray[int(edge) + 5] < 0.3  # one sigma out: about 0.16 of the step
    # wider blur, wider edge; dilation moves the edge out, stronger erosion in
    soft = hull_mask(_oval_points(0.3), size, MaskRule(-5, 15, 10))[112, 112:]
    assert np.sum((soft > 0.01) & (soft < 0.99)) > np.sum((ray > 0.01) & (ray < 0.99))
    grown = hull_mask(_oval_points(0.3), size, MaskRule(5, 5, 10)).sum()
    shrunk = hull_mask(_oval_points(0.3), size, MaskRule(-15, 15, 10)).sum()
    assert grown > mask.sum() > shrunk


def test_hull_mask_scales_with_the_crop():
    small = hull_mask(_oval_points(0.3), 224)
    large = hull_mask(_oval_points(0.3), 448)  # every size in the rule doubles exactly
    assert small.mean() == pytest.approx(large.mean(), abs=0.005)


# ------------------------------------------------------------------------------------------------ tracks

def _face(x: float, y: float, eye: float = 40.0) -> Face:
    template = arcface_template(112) - arcface_template(112).mean(0)
    points = template * (eye / 35.2) + (x, y)
    return Face(box=(x - eye, y - eye, x + eye, y + eye), score=0.9, keypoints=points)


def _run(smoother: KeypointSmoother, frames: list[list[Face]]):
    out = []
    for index, faces in enumerate(frames):
        out += smoother.push(index, faces)
    return out + smoother.flush()


def test_smoother_hands_out_every_frame_once_in_order_with_the_lookahead():
    smoother = KeypointSmoother(radius=2)
    assert smoother.push(0, [_face(100, 100)]) == []
    assert smoother.push(1, [_face(100, 100)]) == []
    assert [i for i, _ in smoother.push(2, [_face(100, 100)])] == [0]
    assert [i for i, _ in smoother.push(3, [])] == [1]
    assert [i for i, _ in smoother.flush()] == [2, 3]


def test_smoothing_averages_within_the_track_only():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1.0, size=(40, 2))
    frames = [[_face(200 + dx, 150 + dy)] for dx, dy in noise]
    raw = np.array([f[0].keypoints for f in frames])
    smooth = np.array([faces[0].keypoints for _, faces in _run(KeypointSmoother(radius=2), frames)])
    assert np.all([faces[0].track == 0 for _, faces in _run(KeypointSmoother(radius=2), frames)])
    # a centred 5-frame mean: the middle frames equal the mean of their window exactly
    assert np.allclose(smooth[10], raw[8:13].mean(0), atol=1e-4)
    assert np.allclose(smooth[0], raw[0:3].mean(0), atol=1e-4)  # at the start only what exists
    # frame-to-frame motion (jitter) drops
    assert np.abs(np.diff(smooth, axis=0)).mean() < 0.6 * np.abs(np.diff(raw, axis=0)).mean()
    unsmoothed = np.array([faces[0].keypoints for _, faces in _run(KeypointSmoother(radius=0), frames)])
    assert np.allclose(unsmoothed, raw)


def test_face_free_frames_and_jumps_split_tracks():
    before = [[_face(100, 100)] for _ in range(4)]
    after = [[_face(300, 120)] for _ in range(4)]
    results = _run(KeypointSmoother(radius=2), before + [[], []] + after)
    tracks = [[t.track for t in faces] for _, faces in results]
    assert tracks[:4] == [[0]] * 4 and tracks[4:6] == [[], []] and tracks[6:] == [[1]] * 4
    # right after the gap the face is where it is, not pulled towards where it was before
    assert np.allclose(results[6][1][0].keypoints, after[0][0].keypoints, atol=1e-4)
    # a jump with no gap (a cut) also starts a new track and is not averaged across
    results = _run(KeypointSmoother(radius=2, jump=0.1), before + after)
    assert [faces[0].track for _, faces in results] == [0] * 4 + [1] * 4
    assert np.allclose(results[3][1][0].keypoints, before[0][0].keypoints, atol=1e-4)
    # a small move stays in the track
    results = _run(KeypointSmoother(radius=2, jump=0.1), [[_face(100, 100)], [_face(101.5, 100)]])
    assert [faces[0].track for _, faces in results] == [0, 0]


def test_two_faces_keep_their_own_tracks():
    frames = [[_face(100 + i, 100), _face(400 - i, 100)] for i in range(6)]
    frames[3] = frames[3][::-1]  # detection order changes
    results = _run(KeypointSmoother(radius=1), frames)
    for _, faces in results:
        by_track = {t.track: t.keypoints.mean(0)[0] for t in faces}
        assert sorted(by_track) == [0, 1] and by_track[0] < 250 < by_track[1]


# ------------------------------------------------------------------------------------------------ paste-back

def test_paste_back_changes_nothing_outside_the_mask_and_round_trips_inside():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    keypoints = arcface_template(112) * 0.8 + (30, 10)
    matrix = alignment_matrix(keypoints, 64)
    import cv2

    mask = np.zeros((64, 64), np.float32)
    mask[16:48, 16:48] = 1
    tensor = torch.from_numpy(frame).permute(2, 0, 1).float()
    painted = torch.full((3, 64, 64), 255.0)
    paste_back(tensor, painted, torch.from_numpy(mask)[None], matrix)
    out = tensor.round().to(torch.uint8).permute(1, 2, 0).numpy()
    inverse = cv2.invertAffineTransform(matrix)
    support = cv2.warpAffine(np.pad(mask[1:-1, 1:-1], 1), inverse, (160, 120), flags=cv2.INTER_LINEAR)
    outside = cv2.dilate((support > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) == 0
    assert outside.sum() > 10000 and np.array_equal(out[outside], frame[outside])
    centre = np.round(cv2.transform(np.array([[[32.0, 32.0]]]), inverse)[0, 0]).astype(int)
    assert np.all(out[centre[1], centre[0]] == 255)


# ------------------------------------------------------------------------------------------------ media

def test_video_transcode_keeps_frames_rate_audio_and_tags(tmp_path, media):
    from faceswap_pl.inference.media import SYNTHETIC_TAG, probe_video, read_frames, transcode, video_tag

    source = media("single_face.mp4")
    inverted = transcode(source, tmp_path / "out.mp4", lambda frames: (255 - f for f in frames))
    original = probe_video(source)
    assert (inverted.frames, inverted.fps, inverted.width, inverted.height) == (72, Fraction(30), 640, 360)
    assert original.has_audio and inverted.has_audio and inverted.audio_codec == original.audio_codec
    assert video_tag(tmp_path / "out.mp4") == SYNTHETIC_TAG
    first_in, first_out = next(read_frames(source)), next(read_frames(tmp_path / "out.mp4"))
    assert np.abs((255 - first_in.astype(int)) - first_out).mean() < 4  # H.264 at crf 18
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no partial file left


def test_bad_videos_and_images_fail_with_one_sentence(tmp_path, media):
    from faceswap_pl.errors import MediaError
    from faceswap_pl.imageio import read_image
    from faceswap_pl.inference.media import probe_video, transcode, write_image

    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video at all\n" * 10)
    with pytest.raises(MediaError, match="empty.mp4 is empty"):
        probe_video(tmp_path / "empty.mp4")
    with pytest.raises(MediaError, match="text.mp4 cannot be read"):
        probe_video(tmp_path / "text.mp4")
    with pytest.raises(MediaError, match="does not exist"):
        probe_video(tmp_path / "missing.mp4")
    import av

    with av.open(str(tmp_path / "sound.mp4"), "w") as container:  # audio only
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(MediaError, match="sound.mp4 has no video stream"):
        probe_video(tmp_path / "sound.mp4")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(MediaError, match="bad.jpg is not a readable image"):
        read_image(tmp_path / "bad.jpg")
    with pytest.raises(MediaError, match="does not exist"):
        write_image(tmp_path / "no" / "such" / "x.png", np.zeros((4, 4, 3), np.uint8))

    def broken(frames):
        for index, frame in enumerate(frames):
            if index == 5:
                raise RuntimeError("stop")
            yield frame

    with pytest.raises(RuntimeError):
        transcode(media("single_face.mp4"), tmp_path / "half.mp4", broken)
    assert not any(tmp_path.glob("*half*"))  # nothing that looks finished, no partial file


def test_image_tags(tmp_path):
    from faceswap_pl.inference.media import SYNTHETIC_TAG, image_tag, write_image

    image = np.zeros((8, 8, 3), np.uint8)
    assert image_tag(write_image(tmp_path / "a.png", image)) == SYNTHETIC_TAG
    assert image_tag(write_image(tmp_path / "a.jpg", image)) == SYNTHETIC_TAG


def _audio_seconds(path) -> float:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(stream)) / stream.rate


def test_audio_is_copied_whole_or_reencoded_when_the_container_needs_it(tmp_path, media):
    import av

    from faceswap_pl.inference.media import transcode

    source = media("single_face.mp4")  # mp3 in mp4: copied packet by packet
    transcode(source, tmp_path / "copy.mp4", lambda frames: frames)
    assert abs(_audio_seconds(tmp_path / "copy.mp4") - _audio_seconds(source)) < 0.05
    clip = tmp_path / "pcm.mkv"  # 16-bit PCM, which MP4 cannot hold: re-encoded to AAC
    with av.open(str(clip), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("pcm_s16le", rate=16000, layout="mono")
        for index in range(25):
            for packet in video.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 8, np.uint8),
                                                                  format="rgb24")):
                container.mux(packet)
            samples = (np.sin(np.arange(640) / 5) * 3000).astype(np.int16)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate, frame.pts = 16000, index * 640
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in [*video.encode(), *audio.encode()]:
            container.mux(packet)
    written = transcode(clip, tmp_path / "pcm.mp4", lambda frames: frames)
    assert written.audio_codec == "aac" and written.frames == 25
    assert abs(_audio_seconds(tmp_path / "pcm.mp4") - 1.0) < 0.1


def test_scaled_crop_matrix_keeps_pixel_centres():
    from faceswap_pl.inference.pipeline import scale_crop_matrix

    keypoints = arcface_template(112) * 1.7 + (40, 25)
    small, large = alignment_matrix(keypoints, 64), alignment_matrix(keypoints, 256)
    # aligning at 256 is the 64 crop resized by 4 with pixel centres kept (cv2.resize / align_corners=False)
    assert np.allclose(scale_crop_matrix(small, 4.0), large + [[0, 0, 1.5], [0, 0, 1.5]], atol=1e-9)
