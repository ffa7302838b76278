"""The demo / test dataset, built offline from the zoo's media files in well under a minute.

Layout of ``<out>``::

    train/        shard dataset (manifest.json, skipped.json, shard-*.tar)
    val/          shard dataset of held-out identities
    splits.json   which media went where and the identity names of each split
    .inputs/      the staged input folders (links to the zoo media)

Identities (18):

* ``WolfgangLanger_Pexels.mp4`` (train) and ``single_face.mp4`` (val) each sit in an identity folder,
  so every track of the video — several groups of up to ``max_frames_per_group`` frames — is one
  identity; ``single_face.jpg`` (the same person) sits in the same folder as ``single_face.mp4`` and
  so joins that identity as a one-frame group of its own.
* loose stills: every face is its own identity ``<stem>#face<k>`` — ``t1.jpg`` (6 people), the four
  posed pictures and ``Tom_Hanks_54745.png`` (train), ``multi_face.jpg`` (5 people, val).

The split holds out whole identities: val (6 identities: the 5 of ``multi_face.jpg`` and
``single_face`` with its video group and its still) shares no person with train (12 identities), so
fixed (source, target) evaluation pairs drawn from val measure one-shot swapping of unseen people,
and val has a multi-frame video group for temporal metrics.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from data_pipelines.build import build_shards
from faceswap_pl import zoo

# split -> {relative staged path: zoo media name}
DEMO_LAYOUT = {
    "train": {
        "wolfgang_langer/WolfgangLanger_Pexels.mp4": "WolfgangLanger_Pexels.mp4",
        "t1.jpg": "t1.jpg",
        "0-f1-su-ph.jpg": "0-f1-su-ph.jpg",
        "0-f15-hao-ph.jpg": "0-f15-hao-ph.jpg",
        "15-f13-anc-ph.jpg": "15-f13-anc-ph.jpg",
        "45-m7-di-ph.jpg": "45-m7-di-ph.jpg",
        "Tom_Hanks_54745.png": "Tom_Hanks_54745.png",
    },
    "val": {
        "single_face/single_face.mp4": "single_face.mp4",
        "single_face/single_face.jpg": "single_face.jpg",
        "multi_face.jpg": "multi_face.jpg",
    },
}


def _media(name: str) -> Path:
    """A zoo media file (the zoo raises its one-sentence ModelNotFetchedError when it is not fetched)."""
    return Path(zoo.media_path(name))


def stage_inputs(root: Path) -> dict[str, Path]:
    """Link (or copy) the demo media into ``root/<split>/...``; returns the input folder of each split."""
    folders = {}
    for split, layout in DEMO_LAYOUT.items():
        folder = root / split
        for rel, name in layout.items():
            target = folder / rel
            source = _media(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                if target.resolve() == source.resolve():
                    continue
                target.unlink()
            try:
                os.symlink(source, target)
            except OSError:
                shutil.copy2(source, target)
        folders[split] = folder
    return folders


def build_demo(out_dir, size: int = 256, video_stride: int = 6, max_frames_per_group: int = 16,
               shard_groups: int = 8, embeddings: str | None = None, workers: int | None = 0, seed: int = 0,
               progress: bool = True) -> dict:
    """Build ``<out_dir>/train`` and ``<out_dir>/val`` from the offline media (see the module docstring).

    Args:
        out_dir: the demo folder.
        size: crop size in pixels.
        video_stride: every n-th video frame is used (6: ~80 frames of WolfgangLanger, 12 of single_face).
        max_frames_per_group: cap of frames per group (video tracks split into groups of this size).
        shard_groups: groups per shard (8: two train shards, one val shard).
        embeddings: identity encoder name for ``emb.npy`` (e.g. ``sface``), or None.
        workers: extraction processes (0: in this process — the demo is too small for worker start-up,
            which imports torch and OpenCV in each process, to pay off on a few cores).
        seed: shuffle seed.
        progress: show progress bars.
    Returns:
        ``{"train": Manifest, "val": Manifest, "seconds": float}``.
    """
    out_dir = Path(out_dir).expanduser()
    started = time.perf_counter()
    folders = stage_inputs(out_dir / ".inputs")
    result: dict = {}
    for split, folder in folders.items():
        result[split] = build_shards(folder, out_dir / split, size=size, video_stride=video_stride,
                                     max_frames_per_group=max_frames_per_group, shard_groups=shard_groups,
                                     embeddings=embeddings, workers=workers, seed=seed, progress=progress)
    splits = {split: {"media": sorted(DEMO_LAYOUT[split].values()), "identities": sorted(result[split].identities),
                      "groups": result[split].groups, "frames": result[split].frames}
              for split in folders}
    splits["rule"] = "val holds out whole identities (no person in both splits)"
    (out_dir / "splits.json").write_text(json.dumps(splits, indent=1))
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result
