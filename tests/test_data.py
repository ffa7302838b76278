"""Shard reading, pairing, augmentation and the DataModule, on small shards written here per schema.py."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from faceswap_pl.data import pairs as pairs_module
from faceswap_pl.data.augment import AugmentConfigError, ViewTransform, build_augment
from faceswap_pl.data.datamodule import FaceSwapDataModule
from faceswap_pl.data.loader import PairDataset, PairLoader
from faceswap_pl.data.pairs import PairSampler, SingleIdentityError, reduction
from faceswap_pl.data.reader import (
    IDENTITY_NAMESPACE,
    ShardNotFoundError,
    ShardReadError,
    read_groups,
    resolve_shards,
    shard_order,
)
from faceswap_pl.data.schema import (
    MANIFEST,
    SCHEMA_VERSION,
    SHARD_PATTERN,
    GroupMeta,
    Manifest,
    ShardInfo,
    ShardSchemaError,
    frame_name,
    sample_key,
)
from faceswap_pl.errors import FaceSwapError

# -- a small shard writer following faceswap_pl.data.schema ------------------------------------


def face_jpeg(identity: int, frame: int, size: int = 64) -> bytes:
    """A coloured synthetic 'face': identity sets the colours, frame moves the features."""
    rng = np.random.default_rng([identity, 7])
    image = np.empty((size, size, 3), np.uint8)
    image[:] = rng.integers(40, 216, 3)
    centre = (size // 2 + (frame % 5) - 2, size // 2 + (frame % 3) - 1)
    cv2.circle(image, centre, size // 3, tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
    cv2.circle(image, (centre[0] - size // 8, centre[1] - size // 10), size // 16, (20, 20, 20), -1)
    cv2.circle(image, (centre[0] + size // 8, centre[1] - size // 10), size // 16, (20, 20, 20), -1)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def embedding(identity: int, frames: int, dim: int = 8) -> np.ndarray:
    vectors = np.random.default_rng([identity, 11]).normal(size=(frames, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: Path, groups: list[dict], size: int = 64, schema: int = SCHEMA_VERSION) -> None:
    """Write groups ``{identity, group, frames: [jpeg bytes], emb: array | None}`` as one shard tar."""
    with tarfile.open(path, "w") as tar:
        for g in groups:
            key = sample_key(g["identity"], g["group"])
            for i, data in enumerate(g["frames"]):
                _add(tar, f"{key}.{frame_name(i)}.jpg", data)
            meta = GroupMeta(identity=g["identity"], identity_name=f"person{g['identity']}", group=g["group"],
                             frames=len(g["frames"]), size=size, source=[f"person{g['identity']}/x.jpg"],
                             embedding="test" if g.get("emb") is not None else None).to_json()
            meta["schema"] = schema
            _add(tar, f"{key}.meta.json", json.dumps(meta).encode())
            if g.get("emb") is not None:
                buffer = io.BytesIO()
                np.save(buffer, g["emb"])
                _add(tar, f"{key}.emb.npy", buffer.getvalue())


def write_dataset(folder: Path, identities: int = 8, groups: int = 2, frames: int = 3, shards: int = 4,
                  size: int = 64, embeddings: bool = False, schema: int = SCHEMA_VERSION,
                  uneven: bool = False) -> list[Path]:
    """A dataset folder: groups shuffled across ``shards`` shards, plus manifest.json. Returns the shard paths."""
    folder.mkdir(parents=True, exist_ok=True)
    all_groups = [{"identity": i, "group": g, "frames": [face_jpeg(i, f, size) for f in range(frames)],
                   "emb": embedding(i, frames) if embeddings else None}
                  for i in range(identities) for g in range(groups)]
    order = np.random.default_rng(3).permutation(len(all_groups))
    if uneven:  # shard k gets k+1 parts: ranks' shares differ in size
        bounds = np.cumsum([0] + [k + 1 for k in range(shards)])
        bounds = (bounds * len(all_groups) / bounds[-1]).astype(int)
        parts = [order[bounds[k]:bounds[k + 1]] for k in range(shards)]
    else:
        parts = np.array_split(order, shards)
    paths, infos = [], []
    for k, part in enumerate(parts):
        path = folder / SHARD_PATTERN.format(index=k)
        chosen = [all_groups[int(i)] for i in part]
        write_shard(path, chosen, size, schema)
        paths.append(path)
        infos.append(ShardInfo(name=path.name, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                               groups=len(chosen), frames=sum(len(g["frames"]) for g in chosen),
                               bytes=path.stat().st_size))
    manifest = Manifest(size=size, shards=infos, identities={f"person{i}": i for i in range(identities)},
                        groups=len(all_groups), frames=len(all_groups) * frames,
                        embedding="test" if embeddings else None)
    data = manifest.to_json()
    data["schema"] = schema
    (folder / MANIFEST).write_text(json.dumps(data))
    return paths


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shards") / "train"
    write_dataset(folder, embeddings=True)
    return folder


def sampler(urls, seed=0, p_same=0.2, buffer=8, embeddings=False) -> PairSampler:
    order = shard_order(urls, seed=seed)
    return PairSampler(read_groups(order, embeddings), np.random.default_rng(seed), p_same=p_same, buffer=buffer)


# -- reader --------------------------------------------------------------------------------------


def test_schema_round_trip(dataset):
    groups = list(read_groups(resolve_shards(str(dataset)), embeddings=True))
    assert len(groups) == 16 and len({g.key for g in groups}) == 16
    for g in groups:
        assert g.key == sample_key(g.identity, g.group) and g.size == 64
        assert g.frames == [face_jpeg(g.identity, f) for f in range(3)]  # bytes as written, never re-encoded
        np.testing.assert_array_equal(g.embeddings, embedding(g.identity, 3))


def test_inputs_folder_glob_brace_pipe_and_list(dataset):
    expected = {g.key for g in read_groups(resolve_shards(str(dataset)))}
    specs = [f"{dataset}/shard-*.tar", f"{dataset}/shard-{{000000..000003}}.tar",
             f"pipe:cat {dataset}/shard-{{000000..000003}}.tar",
             f"file://{dataset}/shard-000000.tar::{dataset}/shard-00000[1-3].tar",
             [str(p) for p in sorted(dataset.glob("*.tar"))]]
    for spec in specs:
        urls = resolve_shards(spec)
        assert len(urls) == 4, spec
        assert {g.key for g in read_groups(urls)} == expected, spec


def test_missing_inputs_name_the_input(tmp_path):
    with pytest.raises(ShardNotFoundError, match="nothing-.*tar.*does not exist"):
        resolve_shards(str(tmp_path / "nothing-{0..1}.tar"))
    with pytest.raises(ShardNotFoundError, match=r"No shard matches .*\*\.tar"):
        resolve_shards(str(tmp_path / "*.tar"))
    with pytest.raises(ShardNotFoundError, match="has no manifest.json"):
        resolve_shards(str(tmp_path))


def test_shard_order_splits_by_rank_and_worker_and_resamples_deterministically():
    urls = [f"s{i}" for i in range(8)]
    slots = [list(itertools.islice(shard_order(urls, seed=1, rank=r, world_size=2, worker=w, num_workers=2), 2))
             for r in range(2) for w in range(2)]
    assert sorted(sum(slots, [])) == urls  # one round: every shard once, no slot shares one
    assert list(itertools.islice(shard_order(urls, seed=1, epoch=1), 8)) != list(
        itertools.islice(shard_order(urls, seed=1, epoch=0), 8))
    few = urls[:3]  # fewer shards than 2 ranks x 2 workers: resampled, seeded per rank and worker
    a = list(itertools.islice(shard_order(few, seed=5, rank=1, world_size=2, worker=1, num_workers=2), 20))
    b = list(itertools.islice(shard_order(few, seed=5, rank=1, world_size=2, worker=1, num_workers=2), 20))
    c = list(itertools.islice(shard_order(few, seed=5, rank=0, world_size=2, worker=1, num_workers=2), 20))
    assert a == b and a != c and set(a) <= set(few)


def _cut_points(path: Path) -> dict[str, int]:
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    last = members[-1]
    return {"inside a member": (last.offset_data + members[-2].offset_data) // 2,
            "inside a header": members[-1].offset + 200,
            "at a header": members[-1].offset,
            "after the last member": last.offset_data + (last.size + 511) // 512 * 512}


def test_truncated_tar_names_the_shard(dataset, tmp_path):
    data = (dataset / "shard-000000.tar").read_bytes()
    for where, cut in _cut_points(dataset / "shard-000000.tar").items():
        broken = tmp_path / "shard-000009.tar"
        broken.write_bytes(data[:cut])
        with pytest.raises(ShardReadError, match=rf"Shard {broken} cannot be read .*truncated or corrupt"):
            list(read_groups(resolve_shards(f"{tmp_path}/*.tar")))
    loader = PairLoader(PairDataset([str(broken)], image_size=64, batch_size=2), batches=4, num_workers=1)
    with pytest.raises(ShardReadError) as caught:  # raised in a worker: the sentence, not the worker traceback
        next(iter(loader))
    assert str(caught.value).startswith(f"Shard {broken} cannot be read") and "Traceback" not in str(caught.value)
    folder = tmp_path / "copy"
    write_dataset(folder, identities=2, groups=1, shards=1)
    shard = folder / "shard-000000.tar"
    shard.write_bytes(shard.read_bytes()[:-10240])  # the manifest's size check catches even a cut in the padding
    with pytest.raises(ShardReadError, match=rf"Shard {shard} .*bytes, manifest.json says"):
        resolve_shards(str(folder))


def test_other_schema_versions_are_refused_clearly(tmp_path):
    write_dataset(tmp_path / "old", identities=2, groups=1, shards=1, schema=0)
    with pytest.raises(ShardSchemaError, match="manifest.json is of shard schema 0, this version reads schema 1"):
        resolve_shards(str(tmp_path / "old"))
    with pytest.raises(ShardSchemaError, match=r"Group id\d{6}_g0000 in shard .* schema 0.*rebuild"):
        list(read_groups([str(tmp_path / "old" / "shard-000000.tar")]))


# -- pairing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("p_same", [0.0, 1.0])
def test_p_same_extremes(dataset, p_same):
    pairs = list(itertools.islice(sampler(resolve_shards(str(dataset)), p_same=p_same), 300))
    assert all(p.same_identity == (p_same == 1.0) for p in pairs)
    assert all((p.source_identity == p.target_identity) == p.same_identity for p in pairs)
    if p_same == 1.0:  # same group, another frame (groups have 3)
        assert all(p.source_ref[0] == p.target_ref[0] and p.source_ref[1] != p.target_ref[1] for p in pairs)


def test_p_same_rate_and_different_identities_always_differ(dataset):
    pairs = list(itertools.islice(sampler(resolve_shards(str(dataset)), p_same=0.2, seed=4), 3000))
    rate = np.mean([p.same_identity for p in pairs])
    assert abs(rate - 0.2) < 0.035, rate  # 4.8 binomial standard deviations
    assert all(p.source_identity != p.target_identity for p in pairs if not p.same_identity)
    sources = {p.source_ref for p in pairs}
    assert len(sources) == 48  # every frame of the dataset serves as a source


def test_only_the_two_chosen_jpegs_are_decoded(dataset, monkeypatch):
    calls = []
    original = pairs_module.decode_image

    def counting(data, *args):
        calls.append(data)
        return original(data, *args)

    monkeypatch.setattr(pairs_module, "decode_image", counting)
    pairs = list(itertools.islice(sampler(resolve_shards(str(dataset))), 200))
    assert len(calls) == 2 * len(pairs)


def test_one_frame_groups_pair_with_themselves_and_single_identity_is_refused(tmp_path):
    one = tmp_path / "one.tar"
    write_shard(one, [{"identity": i, "group": 0, "frames": [face_jpeg(i, 0)]} for i in range(3)])
    pairs = list(itertools.islice(sampler([str(one)], p_same=1.0, buffer=2), 6))
    assert all(p.source_ref == p.target_ref and np.array_equal(p.source, p.target) for p in pairs)
    lone = tmp_path / "lone.tar"
    write_shard(lone, [{"identity": 5, "group": g, "frames": [face_jpeg(5, 0)] * 2} for g in range(3)])
    finite = PairSampler(read_groups([str(lone)]), np.random.default_rng(0), p_same=0.0, buffer=2)
    with pytest.raises(SingleIdentityError, match="Only identity 5 .*p_same=1.0"):
        list(finite)
    endless = PairSampler(read_groups(shard_order([str(lone)], seed=0)), np.random.default_rng(0), p_same=0.0,
                          buffer=2, patience=20)
    with pytest.raises(SingleIdentityError):
        next(iter(endless))


def test_source_embedding_is_the_source_frames_row(dataset):
    for pair in itertools.islice(sampler(resolve_shards(str(dataset)), embeddings=True), 50):
        identity = int(pair.source_ref[0][2:8])
        row = embedding(identity, 3)[pair.source_ref[1]]
        np.testing.assert_array_equal(pair.source_embedding, row.astype(np.float32))


def test_corrupt_jpeg_is_skipped_and_counted(tmp_path, caplog):
    groups = [{"identity": i, "group": 0, "frames": [face_jpeg(i, f) for f in range(2)]} for i in range(4)]
    groups[1]["frames"][0] = b"\xff\xd8 this is not a jpeg"
    write_shard(tmp_path / "bad.tar", groups)
    loader = PairLoader(PairDataset([str(tmp_path / "bad.tar")], image_size=64, batch_size=4, buffer=4), batches=4,
                        num_workers=1)  # the count crosses from the worker in the batches
    with caplog.at_level(logging.WARNING, logger="faceswap_pl.data.loader"):
        batches = list(loader)
    skipped = sum(int(b["skipped"]) for b in batches)
    assert len(batches) == 4 and skipped >= 1 and loader.corrupt_frames == skipped
    assert "corrupt JPEG" in caplog.text


# -- augmentation --------------------------------------------------------------------------------


def test_unknown_augmentation_lists_valid_names(dataset):
    with pytest.raises(AugmentConfigError, match=r"Unknown augmentation 'ColourJitter'.*did you mean ColorJitter.*"
                                                 r"valid names: .*HorizontalFlip"):
        FaceSwapDataModule(train=str(dataset), augment=[{"name": "ColourJitter", "brightness": 0.2}])
    with pytest.raises(AugmentConfigError, match="ColorJitter in entry 0 has invalid parameters"):
        build_augment([{"name": "ColorJitter", "brightness": "bright"}])
    nested = build_augment([{"name": "OneOf", "transforms": [{"name": "HorizontalFlip"}, {"name": "Blur"}]}])
    assert nested is not None and build_augment([]) is None


def test_view_transform_resizes_and_jitters_independently():
    image = cv2.cvtColor(cv2.imdecode(np.frombuffer(face_jpeg(1, 0, 96), np.uint8), cv2.IMREAD_COLOR),
                         cv2.COLOR_BGR2RGB)
    view = ViewTransform(64)  # GHOST jitter
    view.seed(np.random.default_rng(0))
    a, b = view(image), view(image)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8 and not np.array_equal(a, b)
    plain = ViewTransform(64, enabled=False)
    assert np.array_equal(plain(image), plain(image))
    assert [reduction(256, 128), reduction(256, 256), reduction(512, 100), reduction(64, None)] == [2, 1, 4, 1]
    half = pairs_module.decode_image(face_jpeg(1, 0, 96), 2)
    assert half.shape == (48, 48, 3) and abs(int(half[24, 2, 0]) - int(image[48, 4, 0])) < 8  # RGB order kept


# -- loader and DataModule ---------------------------------------------------------------------


def test_batches_follow_the_module_format_and_resize(dataset):
    dm = FaceSwapDataModule(train=str(dataset), image_size=32, batch_size=4, num_workers=0, epoch_pairs=12,
                            use_embeddings=True)
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    batch = batches[0]
    assert batch["source"].shape == batch["target"].shape == (4, 3, 32, 32)
    assert batch["source"].dtype == torch.float32 and batch["source"].is_contiguous()
    assert -1.0 <= batch["source"].min() and batch["source"].max() <= 1.0 and batch["source"].std() > 0.1
    assert batch["same_identity"].dtype == torch.bool and batch["source_embedding"].shape == (4, 8)
    assert torch.equal(batch["same_identity"], batch["source_identity"] == batch["target_identity"])


def test_same_seed_same_stream_and_epochs_differ(dataset):
    def epochs(seed):
        loader = FaceSwapDataModule(train=str(dataset), image_size=32, batch_size=4, num_workers=0, epoch_pairs=8,
                                    seed=seed).train_dataloader()
        return [torch.cat([b["source"] for b in loader]) for _ in range(2)]

    first, again, other = epochs(0), epochs(0), epochs(1)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[0], other[0])


@pytest.mark.parametrize("workers", [0, 2])
def test_a_restored_loader_continues_the_stream_where_it_was_saved(dataset, workers):
    def loader(seed=0, num_workers=workers):
        return FaceSwapDataModule(train=str(dataset), image_size=32, batch_size=2, num_workers=num_workers,
                                  epoch_pairs=6, seed=seed).train_dataloader()

    whole = loader()
    stream = [b["source"] for _ in range(3) for b in whole]  # three epochs of 3 batches
    for taken in (1, 3, 5):  # mid first epoch, at its end, mid second epoch
        first, left = loader(), taken
        while left:
            for _ in zip(range(min(left, 3)), first):
                left -= 1
        state = first.state_dict()
        assert (state["epoch"], state["taken"]) == ((taken - 1) // 3, (taken - 1) % 3 + 1)
        resumed = loader()
        resumed.load_state_dict(state)
        rest = [b["source"] for _ in range(3) for b in resumed][: len(stream) - taken]
        assert len(rest) == len(stream) - taken and all(map(torch.equal, rest, stream[taken:])), taken
        first.shutdown(), resumed.shutdown()
    whole.shutdown()


def test_a_position_from_another_stream_warns_and_starts_the_next_epoch(dataset, caplog):
    def loader(seed):
        return FaceSwapDataModule(train=str(dataset), image_size=32, batch_size=2, num_workers=0, epoch_pairs=6,
                                  seed=seed).train_dataloader()

    saved = loader(0)
    next(iter(saved))
    other = loader(1)
    with caplog.at_level(logging.WARNING):
        other.load_state_dict(saved.state_dict())
    assert "seed 0 -> 1" in caplog.text and "starts the next epoch (1)" in caplog.text
    reference = loader(1)
    iter(reference).__next__()  # epoch 0 started: the next iter() streams epoch 1
    assert all(map(torch.equal, [b["source"] for b in other], [b["source"] for b in reference]))


def test_validation_is_deterministic_and_unaugmented(dataset):
    dm = FaceSwapDataModule(train=str(dataset), val=str(dataset), image_size=64, batch_size=4, num_workers=2,
                            val_pairs=8)
    loader = dm.val_dataloader()
    first, second = [torch.cat([b["target"] for b in loader]) for _ in range(2)]
    loader.shutdown()
    assert torch.equal(first, second)
    assert FaceSwapDataModule(train=str(dataset), num_workers=0).val_dataloader() == []


def test_eval_pairs_are_fixed_across_calls_and_seeds(dataset, tmp_path):
    a = FaceSwapDataModule(train=str(dataset), val=str(dataset), image_size=32, seed=0, eval_pairs=10)
    b = FaceSwapDataModule(train=str(dataset), val=str(dataset), image_size=32, seed=9, eval_pairs=10,
                           eval_pairs_file=str(tmp_path / "pairs.json"))
    pairs = a.eval_pairs()
    assert len(pairs) == 10 and pairs[0][0].shape == (3, 32, 32)
    assert pairs.refs == b.eval_pairs().refs and torch.equal(pairs.source, b.eval_pairs().source)
    assert bool((pairs.source_identity != pairs.target_identity).all())
    assert len(set(pairs.source_identity.tolist())) == 8  # sources cycle through the identities
    reread = FaceSwapDataModule(train=str(dataset), image_size=32, eval_pairs_file=str(tmp_path / "pairs.json"))
    assert reread.eval_pairs().refs == pairs.refs  # from the file (val not given: train shards)
    assert next(pairs.batches(4))["source"].shape == (4, 3, 32, 32)


@pytest.mark.timeout(180)
def test_workers_start_after_opencv_threads_ran_in_the_main_process(dataset):
    # a worker forked from a process whose OpenCV pool has threads hangs in its first cv2 call; the
    # default forkserver start must not (pytest-timeout turns a hang into a failure)
    cv2.setNumThreads(2)
    big = np.random.default_rng(0).integers(0, 255, (1024, 1024, 3), dtype=np.uint8)
    for _ in range(3):
        cv2.resize(big, (700, 700), interpolation=cv2.INTER_AREA)
    loader = FaceSwapDataModule(train=str(dataset), image_size=32, batch_size=4, num_workers=1,
                                epoch_pairs=8).train_dataloader()
    assert [b["source"].shape for b in loader] == [(4, 3, 32, 32)] * 2
    loader.shutdown()
    with pytest.raises(FaceSwapError, match="data.worker_start='threads' is not one of forkserver, spawn, fork"):
        FaceSwapDataModule(train=str(dataset), worker_start="threads")


def test_epoch_pairs_needs_a_manifest_or_a_value(dataset):
    assert len(FaceSwapDataModule(train=str(dataset), batch_size=4, num_workers=0).train_dataloader()) == 12
    with pytest.raises(FaceSwapError, match="data.epoch_pairs is needed"):
        FaceSwapDataModule(train=f"{dataset}/shard-*.tar", num_workers=0).train_dataloader()


def counting_module_class():
    """A LightningModule class that records what it is fed (Lightning is imported only when needed)."""
    import lightning as L

    class Counting(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)
            self.seen: list[int] = []  # the epoch of every training batch
            self.sources: list[float] = []  # a fingerprint of every training batch
            self.val_batches = 0

        def training_step(self, batch, batch_idx):
            assert batch["source"].dtype == torch.float32
            self.seen.append(self.current_epoch)
            self.sources.append(float(batch["source"].sum()))
            return self.layer(batch["source"].mean().view(1, 1)).sum()

        def validation_step(self, batch, batch_idx):
            self.val_batches += 1

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    return Counting


@pytest.mark.parametrize("with_val", [True, False])
def test_lightning_fit_takes_the_loader_length_each_epoch(dataset, tmp_path, with_val):
    import lightning as L

    module = counting_module_class()()
    dm = FaceSwapDataModule(train=str(dataset), val=str(dataset) if with_val else None, image_size=32, batch_size=4,
                            num_workers=1, epoch_pairs=20, val_pairs=8)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    assert module.seen == [0] * 5 + [1] * 5
    assert module.val_batches == (4 if with_val else 0)


@pytest.mark.parametrize("name", ["../evil.meta.json", "/etc/id000000_g0000.meta.json", "sub/id000000_g0000.f00.jpg",
                                  "..\\x.jpg"])
def test_member_names_with_paths_are_refused(tmp_path, name):
    shard = tmp_path / "shard-000000.tar"
    with tarfile.open(shard, "w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    with pytest.raises(ShardSchemaError, match=r"holds a member named .* \(a path, not a flat name\)"):
        list(read_groups([str(shard)]))


def test_joined_builds_never_share_identity_ids(tmp_path):
    # two builds number their people 0..3 alike: read together, each build is its own namespace
    first, second = tmp_path / "a", tmp_path / "b"
    write_dataset(first, identities=4, groups=1, shards=2)
    write_dataset(second, identities=4, groups=1, shards=2)
    for spec in (f"{first}::{second}", [str(p) for p in sorted(first.glob("*.tar")) + sorted(second.glob("*.tar"))],
                 f"{first}/shard-*.tar::{second}/shard-*.tar"):
        groups = list(read_groups(resolve_shards(spec)))
        assert len(groups) == 8
        ids = {g.identity for g in groups}
        assert ids == {0, 1, 2, 3} | {IDENTITY_NAMESPACE + i for i in range(4)}, spec
        assert len({g.key for g in groups}) == 8
    # shards of one build stay one namespace however they are named (paths, globs, several `::` parts)
    single = resolve_shards(f"{first}/shard-000000.tar::{first}/shard-000001.tar")
    assert {g.identity for g in read_groups(single)} == {0, 1, 2, 3}
    # the pairing's different-identity guarantee holds across the builds: ids differ, so "different" is real
    pairs = list(itertools.islice(sampler(resolve_shards(f"{first}::{second}"), p_same=0.0), 40))
    assert all(p.source_identity != p.target_identity for p in pairs)
    assert {p.source_identity >= IDENTITY_NAMESPACE for p in pairs} == {True, False}
