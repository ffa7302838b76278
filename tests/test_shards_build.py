"""Shard building: schema, manifest, skipped inputs, group splitting, video tracks, resume, embeddings, CLI.

Inputs are small folders generated from the offline media (crops, flips, slight rotations of the
posed pictures; a corrupt, an empty, a blurred, a tiny and a face-free image; videos with and
without faces and a fake one). Builds run in-process except one that exercises the worker pool.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from data_pipelines import DatasetInputError, OutputDirError, build_shards
from data_pipelines.extract import read_group, save_group
from data_pipelines.inspection import iter_samples
from data_pipelines.shards import PlannedGroup, sample_members
from data_pipelines.video_groups import FaceTracker
from faceswap_pl.alignment import arcface_template
from faceswap_pl.data.schema import MANIFEST, SKIPPED, GroupMeta, Manifest, parse_key
from faceswap_pl.files import sha256_of
from faceswap_pl.imageio import decode_image
from faceswap_pl.models.detectors import Face
from faceswap_pl.models.identity import create_identity_encoder

SIZE = 128


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])


def _posed(media, name: str, side: int = 256) -> np.ndarray:
    image = cv2.cvtColor(cv2.imread(str(media(name))), cv2.COLOR_BGR2RGB)
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)


def _rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(scope="module")
def identity_tree(tmp_path_factory, media) -> Path:
    """alice: 5 good variants; bob: 2 good + corrupt + empty + .txt; carol: 1 good + no face, tiny, blurred; dave: 1."""
    root = tmp_path_factory.mktemp("people")
    alice = _posed(media, "0-f1-su-ph.jpg")
    for i, variant in enumerate([alice, alice[:, ::-1].copy(), _rotate(alice, 6), _rotate(alice, -6),
                                 cv2.resize(alice[16:240, 16:240], (256, 256))]):
        _write(root / "alice" / f"{i:02d}.jpg", variant)
    bob = _posed(media, "0-f15-hao-ph.jpg")
    _write(root / "bob" / "a.jpg", bob)
    _write(root / "bob" / "b.jpg", _rotate(bob[:, ::-1].copy(), 4))
    (root / "bob" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 20)
    (root / "bob" / "empty.jpg").write_bytes(b"")
    (root / "bob" / "notes.txt").write_text("not an image")
    carol = _posed(media, "15-f13-anc-ph.jpg")
    _write(root / "carol" / "good.jpg", carol)
    ramp = np.linspace(0, 255, 200, dtype=np.uint8)
    _write(root / "carol" / "wall.jpg", np.dstack([np.tile(ramp, (200, 1))] * 3))
    _write(root / "carol" / "tiny.jpg", cv2.resize(carol, (96, 96), interpolation=cv2.INTER_AREA))
    _write(root / "carol" / "blurred.jpg", cv2.GaussianBlur(carol, (0, 0), 4))
    _write(root / "dave" / "x.jpg", _posed(media, "45-m7-di-ph.jpg"))
    return root


EXPECTED_SKIPS = {
    "bob/corrupt.jpg": "unreadable image", "bob/empty.jpg": "unreadable image", "bob/notes.txt": "unsupported file type",
    "carol/wall.jpg": "no face", "carol/tiny.jpg": "face too small", "carol/blurred.jpg": "too blurry",
}


def _build_people(tree: Path, out: Path, **kwargs) -> Manifest:
    options = dict(size=SIZE, max_frames_per_group=2, shard_groups=2, workers=0, progress=False)
    options.update(kwargs)
    return build_shards(tree, out, **options)


@pytest.fixture(scope="module")
def people(identity_tree, tmp_path_factory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("people_shards")
    return out, _build_people(identity_tree, out)


def _members(path: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            key, _, ext = member.name.partition(".")
            samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return samples


def test_shards_follow_the_schema(people):
    out, manifest = people
    template = arcface_template(SIZE)
    seen = 0
    for info in manifest.shards:
        for key, members in _members(out / info.name).items():
            identity, group = parse_key(key)
            meta = GroupMeta.from_json(json.loads(members["meta.json"]))
            assert (meta.identity, meta.group, meta.size) == (identity, group, SIZE)
            assert sorted(members) == sorted([f"f{i:02d}.jpg" for i in range(meta.frames)] + ["meta.json"])
            for i in range(meta.frames):
                assert decode_image(members[f"f{i:02d}.jpg"]).shape == (SIZE, SIZE, 3)
            landmarks = np.asarray(meta.landmarks)
            assert landmarks.shape == (meta.frames, 5, 2) and len(meta.scores) == meta.frames
            offsets = np.linalg.norm(landmarks - template, axis=-1)  # turned heads fit the template less well
            assert offsets.mean() < 0.05 * SIZE and offsets.max() < 0.12 * SIZE
            assert meta.frame_indices == [] and meta.embedding is None
            assert manifest.identities[meta.identity_name] == identity
            seen += 1
    assert seen == manifest.groups


def test_manifest_counts_checksums_and_identity_ids(people):
    out, manifest = people
    on_disk = Manifest.from_json(json.loads((out / MANIFEST).read_text()))
    assert on_disk == manifest
    assert manifest.identities == {"alice": 0, "bob": 1, "carol": 2, "dave": 3}
    # alice 5 frames -> 3 balanced groups (2, 2, 1); bob 2 frames; carol 1; dave 1
    assert (manifest.groups, manifest.frames) == (6, 9)
    assert [s.name for s in manifest.shards] == [f"shard-{i:06d}.tar" for i in range(3)]
    for info in manifest.shards:
        assert sha256_of(out / info.name) == info.sha256 and (out / info.name).stat().st_size == info.bytes
    assert sum(s.groups for s in manifest.shards) == 6 and sum(s.frames for s in manifest.shards) == 9
    groups = {(m.identity_name, m.group): m.frames for _, m, _ in iter_samples(out)}
    assert {k: v for k, v in groups.items() if k[0] == "alice"} == {("alice", 0): 2, ("alice", 1): 2, ("alice", 2): 1}
    assert not list(out.glob(".work")) and not list(out.glob("*.tmp"))


def test_every_bad_input_is_listed_with_its_reason(people):
    out, _ = people
    skipped = {entry["source"]: entry["reason"] for entry in json.loads((out / SKIPPED).read_text())}
    assert skipped == EXPECTED_SKIPS


def test_resume_keeps_intact_shards_and_redoes_broken_ones(identity_tree, people, tmp_path):
    out = tmp_path / "resume"
    first = _build_people(identity_tree, out, keep_work=True)
    assert first.shards == people[1].shards  # builds are byte-for-byte deterministic
    work = sorted((out / ".work").iterdir())
    work_mtimes = [p.stat().st_mtime_ns for p in work]
    paths = [out / s.name for s in first.shards]
    kept = paths[0].stat()
    paths[1].unlink()
    with open(paths[2], "r+b") as handle:
        handle.seek(1000)
        handle.write(b"corrupted")
    (out / "shard-000007.tar").write_bytes(b"stale shard of an older build")
    second = _build_people(identity_tree, out, keep_work=True)
    assert second == first
    after = paths[0].stat()
    assert (after.st_ino, after.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)
    for path, info in zip(paths, second.shards):
        assert sha256_of(path) == info.sha256
    assert not (out / "shard-000007.tar").exists()
    assert [p.stat().st_mtime_ns for p in sorted((out / ".work").iterdir())] == work_mtimes  # units not redone


@pytest.mark.parametrize("embeddings", [True, False])
def test_cached_group_round_trips_exactly(tmp_path, embeddings):
    rng = np.random.default_rng(0)
    record = {
        "identity_name": "zoë #track3", "source": ["a/é.jpg", "b.mp4"],
        "jpeg": [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (1000, 1, 2500)],
        "landmarks": rng.normal(64, 20, (3, 5, 2)).astype(np.float32),
        "scores": [round(float(x), 4) for x in rng.random(3)],
        "frame_indices": [0, 6, 12],
        "embeddings": rng.normal(0, 1, (3, 128)).astype(np.float16) if embeddings else None,
    }
    record["scores"][0] = 0.1 + 0.2  # 0.30000000000000004: every digit of a float comes back
    save_group(tmp_path / "g00000.npz", record)
    back = read_group(tmp_path / "g00000.npz")
    assert sorted(back) == sorted(record)
    for name in ("identity_name", "source", "jpeg", "scores", "frame_indices"):
        assert back[name] == record[name] and type(back[name]) is type(record[name])
    assert all(type(x) is float for x in back["scores"]) and all(type(j) is bytes for j in back["jpeg"])
    for name in ("landmarks", "embeddings"):
        if record[name] is None:
            assert back[name] is None
        else:
            assert back[name].dtype == record[name].dtype and back[name].shape == record[name].shape
            assert back[name].tobytes() == record[name].tobytes()
    planned = PlannedGroup("digest", 0, 0, record["identity_name"], 3, identity=2, group=1)
    embedding = "sface" if embeddings else None
    assert sample_members(planned, back, SIZE, embedding) == sample_members(planned, record, SIZE, embedding)
    assert not [p.name for p in tmp_path.iterdir() if p.name != "g00000.npz"]  # the temporary name was renamed


class _Planted:
    """Unpickling this creates ``marker``: what a planted cache file could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.mark.parametrize("plant", ["pickle_as_npz", "truncated_npz", "old_pkl"])
def test_planted_or_broken_cache_file_is_never_loaded(identity_tree, tmp_path, caplog, plant):
    """A pickle at the cache path, a cut-off group file or an older version's .pkl: not loaded, unit redone."""
    tree = tmp_path / "one"
    shutil.copytree(identity_tree / "dave", tree / "dave")
    out = tmp_path / "out"
    first = _build_people(tree, out, keep_work=True)
    (unit,) = (out / ".work").iterdir()
    group = unit / "g00000.npz"
    marker = tmp_path / "marker"
    payload = pickle.dumps(_Planted(marker))
    if plant == "pickle_as_npz":
        group.write_bytes(payload)
    elif plant == "truncated_npz":
        group.write_bytes(group.read_bytes()[:-200])
    else:
        group.unlink()
        (unit / "g00000.pkl").write_bytes(payload)
    with caplog.at_level(logging.WARNING, logger="data_pipelines.extract"):
        second = _build_people(tree, out, keep_work=True)
    assert not marker.exists()
    assert second == first
    warnings = [r.getMessage() for r in caplog.records if r.name == "data_pipelines.extract"]
    assert len(warnings) == 1
    named = f"{unit} holds the pickle cache of an older version (g00000.pkl)" if plant == "old_pkl" else str(group)
    assert named in warnings[0] and "extracting dave again" in warnings[0]
    assert read_group(group)["identity_name"] == "dave" and not list(unit.glob("*.pkl"))
    pickle.loads(payload)  # the payload was live: unpickling it is what would have created the marker
    assert marker.exists()


def test_video_tracks_become_groups(media, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(media("single_face.mp4"), videos / "single_face.mp4")
    shutil.copy(media("no_face.mp4"), videos / "no_face.mp4")
    (videos / "fake.mp4").write_text("this is not a video")
    out = tmp_path / "out"
    manifest = build_shards(videos, out, size=SIZE, video_stride=6, max_frames_per_group=5, shard_groups=2,
                            workers=2, progress=False)
    assert manifest.identities == {"single_face#track0": 0}
    metas = sorted((m for _, m, _ in iter_samples(out)), key=lambda m: m.group)
    assert [m.frames for m in metas] == [5, 5, 2]  # 72 frames, stride 6: 12 sampled frames, one track
    indices = [i for m in metas for i in m.frame_indices]
    assert indices == list(range(0, 72, 6))
    assert all(m.source == ["single_face.mp4"] and len(m.frame_indices) == m.frames for m in metas)
    skipped = {entry["source"]: entry["reason"] for entry in json.loads((out / SKIPPED).read_text())}
    assert skipped == {"no_face.mp4": "no face", "fake.mp4": "unreadable video"}


def _face(x: float, size: float = 100.0) -> Face:
    box = (x, 0, x + size, size)
    points = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]]) * size + [x, 0]
    return Face(box=box, score=0.9, keypoints=points)


def test_tracker_cuts_at_jumps_and_missing_frames():
    groups = []
    tracker = FaceTracker(lambda k, crops: groups.append((k, list(crops))), track_jump=0.3, max_frames_per_group=3,
                          min_track_frames=2)
    for step, xs in enumerate([[0], [10], [20], [25], [200], [205], [], [210], [215, 600]]):
        tracker.update([_face(x) for x in xs], [f"crop{step}:{x}" for x in xs])
    tracker.close()
    assert groups == [(0, ["crop0:0", "crop1:10", "crop2:20"]), (0, ["crop3:25"]),  # split at 3, jump to 200 cuts
                      (1, ["crop4:200", "crop5:205"]),                                 # missing frame cuts
                      (2, ["crop7:210", "crop8:215"])]
    assert tracker.too_short == [["crop8:600"]]  # 600 appeared once: a track of 1 frame is too short


def test_embeddings_are_stored_raw(identity_tree, tmp_path):
    tree = tmp_path / "two"
    for name in ("alice", "dave"):
        shutil.copytree(identity_tree / name, tree / name)
    out = tmp_path / "out"
    manifest = _build_people(tree, out, embeddings="sface", max_frames_per_group=10)
    assert manifest.embedding == "sface" and manifest.embedding_vector == "raw"
    encoder = create_identity_encoder("sface")
    embeddings = {}
    for info in manifest.shards:
        for members in _members(out / info.name).values():
            meta = GroupMeta.from_json(json.loads(members["meta.json"]))
            emb = np.load(io.BytesIO(members["emb.npy"]))
            assert emb.dtype == np.float16 and emb.shape == (meta.frames, 128) and meta.embedding == "sface"
            # the raw features GHOST feeds: the encoder on the stored crop with the bilinear resize, not unit vectors
            crops = np.stack([cv2.cvtColor(cv2.imdecode(np.frombuffer(members[f"f{i:02d}.jpg"], np.uint8),
                                                        cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for i in range(meta.frames)])
            with torch.no_grad():
                expected = encoder.features(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1, "bilinear")
            np.testing.assert_allclose(emb.astype(np.float32), expected.numpy(), rtol=2e-3, atol=2e-3)
            assert np.abs(np.linalg.norm(emb.astype(np.float32), axis=1) - 1.0).min() > 0.1
            embeddings[meta.identity_name] = emb.astype(np.float32) / np.linalg.norm(emb.astype(np.float32), axis=1,
                                                                                      keepdims=True)
    alice, dave = embeddings["alice"], embeddings["dave"]
    assert (alice @ alice.T).min() > (alice @ dave.T).max()  # the variants of one person are closer


def test_empty_input_and_no_faces_give_one_clear_sentence(tmp_path):
    empty = tmp_path / "empty"
    (empty / "alice").mkdir(parents=True)
    with pytest.raises(DatasetInputError, match=r"'.*empty' holds no images or videos; expected one folder per person"):
        build_shards(empty, tmp_path / "out", workers=0, progress=False)
    faceless = tmp_path / "faceless"
    ramp = np.linspace(0, 255, 160, dtype=np.uint8)
    _write(faceless / "alice" / "wall.jpg", np.dstack([np.tile(ramp, (160, 1))] * 3))
    (faceless / "alice" / "broken.png").write_bytes(b"")
    with pytest.raises(DatasetInputError, match=r"No face passed the filters in '.*faceless' \(2 inputs skipped: "
                                                r"1 no face, 1 unreadable image\)"):
        build_shards(faceless, tmp_path / "out", workers=0, progress=False)
    assert len(json.loads((tmp_path / "out" / SKIPPED).read_text())) == 2
    with pytest.raises(DatasetInputError, match="does not exist"):
        build_shards(tmp_path / "missing", tmp_path / "out", workers=0, progress=False)


def test_unwritable_output_folder(identity_tree, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OutputDirError, match=r"Cannot write to the output folder '.*a_file/out'"):
        build_shards(identity_tree, blocker / "out", workers=0, progress=False)


def test_cli_demo_and_inspect(tmp_path, capsys):
    from faceswap_pl.cli import main

    out = tmp_path / "demo"
    assert main(["shards", "demo", "--out", str(out), "--size", str(SIZE), "--quiet"]) == 0
    train, val = (Manifest.from_json(json.loads((out / s / MANIFEST).read_text())) for s in ("train", "val"))
    assert len(train.identities) + len(val.identities) >= 15 and not set(train.identities) & set(val.identities)
    assert "single_face" in val.identities and "wolfgang_langer" in train.identities
    for split in ("train", "val"):
        assert max(m.frames for _, m, _ in iter_samples(out / split)) > 1
    single = [m for _, m, _ in iter_samples(out / "val") if m.identity_name == "single_face"]
    assert sorted(m.source[0] for m in single) == ["single_face/single_face.jpg", "single_face/single_face.mp4"]
    capsys.readouterr()
    sheet = tmp_path / "sheet.png"
    assert main(["shards", "inspect", str(out / "train"), "--sheet", str(sheet), "--verify"]) == 0
    printed = capsys.readouterr().out
    assert "│ identities" in printed and f"{len(train.identities)} │" in printed and f"{train.frames} │" in printed
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[0] >= 128 and image.shape[1] >= 128 * 6


def test_cli_build_reports_errors(tmp_path, capsys):
    from faceswap_pl.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["shards", "build", "--input", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: The input folder") and "holds no images or videos" in error
    assert error.count("\n") == 1


def test_full_disk_while_writing_shards_keeps_no_half_shard(identity_tree, tmp_path, monkeypatch, capsys):
    """ENOSPC in the middle of a shard: one sentence, exit 2, no .tmp or manifest left, a rerun completes."""
    import errno

    from data_pipelines import shards
    from faceswap_pl.cli import main

    real_write, written = shards._HashingWriter.write, {"bytes": 0}

    def fills_up(self, data):
        written["bytes"] += len(data)
        if written["bytes"] > 20_000:  # part-way through the first shard
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(shards._HashingWriter, "write", fills_up)
    out = tmp_path / "out"
    assert main(["shards", "build", "--input", str(identity_tree), "--out", str(out), "--workers", "0", "--quiet"]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "No space left on device" in message and "run the same command again" in message
    assert not list(out.glob("*.tmp")) and not (out / MANIFEST).exists()
    monkeypatch.undo()
    assert main(["shards", "build", "--input", str(identity_tree), "--out", str(out), "--workers", "0", "--quiet"]) == 0
    assert (out / MANIFEST).is_file()
