"""Training-pair throughput: our shard loader vs GHOST's folder-of-JPEGs loader (pairs/s, 256 px, augmented).

Ours: :class:`~faceswap_pl.data.FaceSwapDataModule` over WebDataset shards -- group stream, pairing
buffer, two ``cv2.imdecode`` per pair, albumentations ``ColorJitter(0.2, 0.2, 0.2, 0.01)`` per view,
uint8 batches from the workers, float [-1, 1] in the main process.

GHOST's way (re-implemented here after sber-swap's dataset): identity folders of JPEGs; per pair a
random source image, with probability 0.2 another image of its folder else a random image of the
set; each view ``PIL.Image.open(...).convert("RGB")`` -> torchvision ``ColorJitter(0.2, 0.2, 0.2,
0.01)`` -> ``Resize((256, 256))`` -> ``ToTensor`` -> ``Normalize(0.5, 0.5)``; a shuffled DataLoader.

Both read the same frames: by default the script cuts them from the demo media (random square crops,
flips and tints of the zoo's face photos, 256 px JPEG q95) into a temporary folder, written both as
shards and as identity folders. Throughput is measured after the first batch (worker start-up is
reported apart), for ``--seconds`` per measurement, the two loaders alternating for ``--rounds`` rounds (the ratio
is ours / GHOST way per round, both measured in the same run), with the CPU time all the loader's processes spent per
pair (from /proc: the part of the cost that does not depend on what else runs). The load average is
printed because other processes sharing the cores change the pairs/s.

    python benchmarks/data.py                         # 0 and 2 workers, both loaders
    python benchmarks/data.py --workers 2 --seconds 30
    python benchmarks/data.py --shards data/demo/train --ghost-folders data/faces   # your own data
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MEDIA = ["t1.jpg", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg",
         "Tom_Hanks_54745.png", "single_face.jpg", "multi_face.jpg"]


def make_frames(identities: int, groups: int, frames: int, size: int, seed: int = 0) -> list[list[list[bytes]]]:
    """JPEG crops cut from the demo media: ``result[identity][group][frame]``."""
    import cv2

    from faceswap_pl import zoo

    rng = np.random.default_rng(seed)
    images = [cv2.imread(str(zoo.media_path(name)), cv2.IMREAD_COLOR) for name in MEDIA]
    out = []
    for identity in range(identities):
        image = images[identity % len(images)]
        tint = rng.uniform(0.8, 1.2, 3)
        person = []
        for _ in range(groups):
            group = []
            for _ in range(frames):
                side = int(min(image.shape[:2]) * rng.uniform(0.3, 0.9))
                y, x = rng.integers(0, image.shape[0] - side + 1), rng.integers(0, image.shape[1] - side + 1)
                crop = cv2.resize(image[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
                crop = np.clip(crop * tint, 0, 255).astype(np.uint8)
                if rng.random() < 0.5:
                    crop = crop[:, ::-1]
                group.append(cv2.imencode(".jpg", np.ascontiguousarray(crop), [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
                             .tobytes())
            person.append(group)
        out.append(person)
    return out


def write_benchmark_data(root: Path, frames: list[list[list[bytes]]], size: int, shards: int = 8) -> tuple[Path, Path]:
    """The frames as a shard dataset folder (schema.py) and as GHOST-style identity folders."""
    import hashlib
    import io
    import json
    import tarfile

    from faceswap_pl.data.schema import MANIFEST, SHARD_PATTERN, GroupMeta, Manifest, ShardInfo, frame_name, sample_key

    shard_dir, folders = root / "shards", root / "folders"
    shard_dir.mkdir(parents=True)
    groups = [(i, g, group) for i, person in enumerate(frames) for g, group in enumerate(person)]
    random.Random(0).shuffle(groups)
    infos = []
    for k in range(shards):
        path = shard_dir / SHARD_PATTERN.format(index=k)
        part = groups[k::shards]
        with tarfile.open(path, "w") as tar:
            for identity, g, group in part:
                key = sample_key(identity, g)
                meta = GroupMeta(identity=identity, identity_name=f"id{identity}", group=g, frames=len(group),
                                 size=size, source=["benchmark"]).to_json()
                members = [(f"{key}.{frame_name(f)}.jpg", data) for f, data in enumerate(group)]
                for name, data in members + [(f"{key}.meta.json", json.dumps(meta).encode())]:
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        infos.append(ShardInfo(name=path.name, sha256=hashlib.sha256(path.read_bytes()).hexdigest(), groups=len(part),
                               frames=sum(len(x[2]) for x in part), bytes=path.stat().st_size))
    manifest = Manifest(size=size, shards=infos, identities={f"id{i}": i for i in range(len(frames))},
                        groups=len(groups), frames=sum(i.frames for i in infos))
    (shard_dir / MANIFEST).write_text(json.dumps(manifest.to_json()))
    for identity, g, group in groups:
        person = folders / f"id{identity:04d}"
        person.mkdir(parents=True, exist_ok=True)
        for f, data in enumerate(group):
            (person / f"{g:02d}_{f:02d}.jpg").write_bytes(data)
    return shard_dir, folders


class GhostPairs:
    """GHOST's pairing over identity folders (a map-style dataset of ``length`` random pairs)."""

    def __init__(self, root: Path, same_prob: float = 0.2, size: int = 256, length: int = 10 ** 6) -> None:
        import torchvision.transforms as T

        self.folders = [sorted(str(p) for p in d.glob("*.*g")) for d in sorted(Path(root).iterdir()) if d.is_dir()]
        self.images = [p for folder in self.folders for p in folder]
        self.same_prob, self.length = same_prob, length
        self.transform = T.Compose([T.ColorJitter(0.2, 0.2, 0.2, 0.01), T.Resize((size, size)), T.ToTensor(),
                                    T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        from PIL import Image

        folder = random.randrange(len(self.folders))
        source = random.choice(self.folders[folder])
        same = random.random() < self.same_prob
        target = random.choice(self.folders[folder]) if same else random.choice(self.images)
        views = [self.transform(Image.open(path).convert("RGB")) for path in (source, target)]
        return views[0], views[1], same


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its live children (the DataLoader workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    me, total = os.getpid(), 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == me or ppid == me:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def measure(loader, batch_size: int, seconds: float) -> tuple[float, float, float]:
    """(seconds to the first batch, pairs/s after it, CPU ms per pair after it) iterating for ``seconds``."""
    start = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first, cpu = time.perf_counter(), cpu_seconds()
    pairs = 0
    while time.perf_counter() - first < seconds:
        next(iterator)
        pairs += batch_size
    elapsed, cpu = time.perf_counter() - first, cpu_seconds() - cpu
    return first - start, pairs / elapsed, 1000 * cpu / pairs


def run_ours(shards: Path, workers: int, batch: int, size: int, seconds: float) -> tuple[float, float, float]:
    from faceswap_pl.data.datamodule import FaceSwapDataModule

    dm = FaceSwapDataModule(train=str(shards), image_size=size, batch_size=batch, num_workers=workers,
                            epoch_pairs=10 ** 7)
    loader = dm.train_dataloader()
    try:
        return measure(loader, batch, seconds)
    finally:
        loader.shutdown()


def run_ghost(folders: Path, workers: int, batch: int, size: int, seconds: float) -> tuple[float, float, float]:
    from torch.utils.data import DataLoader

    loader = DataLoader(GhostPairs(folders, size=size), batch_size=batch, shuffle=True, num_workers=workers,
                        drop_last=True)
    return measure(loader, batch, seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per row")
    parser.add_argument("--shards", type=Path, help="a shard dataset folder (default: built from the demo media)")
    parser.add_argument("--ghost-folders", type=Path, help="identity folders of JPEGs for GHOST's loader")
    parser.add_argument("--identities", type=int, default=48)
    parser.add_argument("--skip-ghost", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="alternating ours / GHOST-way rounds per worker count")
    args = parser.parse_args(argv)

    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="faceswap_data_bench_") as tmp:
        shards, folders = args.shards, args.ghost_folders
        if shards is None:
            frames = make_frames(args.identities, groups=2, frames=8, size=args.size)
            shards, built_folders = write_benchmark_data(Path(tmp), frames, args.size)
            folders = folders or built_folders
        rows = []
        for workers in args.workers:
            loaders = [("shards (ours)", run_ours, shards)]
            if folders is not None and not args.skip_ghost:
                loaders.append(("folders (GHOST way)", run_ghost, folders))
            rounds: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name, _, _ in loaders}
            for _ in range(args.rounds):  # the two loaders alternate, so a shared machine's drift hits both
                for name, run, path in loaders:
                    load = os.getloadavg()[0]
                    startup, rate, cpu = run(path, workers, args.batch, args.size, args.seconds)
                    rounds[name].append((rate, cpu, startup, load))
                    print(f"# {name}, {workers} workers: {rate:.1f} pairs/s", file=sys.stderr, flush=True)
            ghost = [r[0] for r in rounds.get("folders (GHOST way)", [])]
            for name, measured in rounds.items():
                rates = [r[0] for r in measured]
                ratios = [a / b for a, b in zip(rates, ghost)] if ghost else []
                rows.append((name, workers, rates, ratios, statistics.median(r[1] for r in measured),
                             statistics.median(r[2] for r in measured), max(r[3] for r in measured)))
    print(f"\nPairs/s at {args.size} px, batch {args.batch}, augmented (ColorJitter per view), "
          f"{os.cpu_count()} CPUs, {args.seconds:.0f} s per measurement, {args.rounds} alternating rounds\n")
    print("| loader | workers | pairs/s (median of rounds) | range | vs GHOST way, same run (per-round range) "
          "| CPU ms / pair | first batch (s) | highest load avg at start |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, workers, rates, ratios, cpu, startup, load in rows:
        ratio = (f"{statistics.median(ratios):.1f}x ({min(ratios):.1f}-{max(ratios):.1f})" if ratios else "-")
        print(f"| {name} | {workers} | {statistics.median(rates):.1f} | {min(rates):.1f}-{max(rates):.1f} | {ratio} "
              f"| {cpu:.2f} | {startup:.2f} | {load:.1f} |")
    print("\nCPU ms / pair counts the main process and its workers; on a machine of its own, N workers on N free "
          "cores approach N x 1000 / (CPU ms per pair) pairs/s.")


if __name__ == "__main__":
    main()
