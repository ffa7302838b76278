"""``build_shards``: input folders -> a WebDataset shard folder (schema in ``faceswap_pl.data.schema``).

Resume design. A build runs in three steps, each of which survives being killed:

1. *Extract* (parallel worker processes): every unit (identity folder, video, loose still; see
   :mod:`data_pipelines.sources`) is detected, filtered, aligned and JPEG-encoded into
   ``<out>/.work/<digest>/``, renamed into place when the unit is complete. The digest covers the
   unit's files (path, size, mtime) and all extraction settings, so a rerun skips finished units.
2. *Plan*: identity ids (sorted names), group indices and the assignment of groups to shards are a
   pure function of the extracted groups, ``shard_groups`` and ``seed`` — shard ``i`` always holds
   the same groups for the same inputs and settings.
3. *Write*: tars are byte-for-byte deterministic, so the sha256 of every planned shard is known
   before it is written; an existing shard whose bytes hash to it is kept untouched (same inode and
   mtime), any other is rewritten to ``shard-XXXXXX.tar.tmp`` and renamed. ``manifest.json`` (with
   the sha256 of every shard) and ``skipped.json`` are written last, also atomically.

When the build completes ``.work`` is deleted (``keep_work=True`` keeps it, so that later reruns
skip extraction too); a rerun then re-extracts, which yields the same bytes, and still keeps every
shard that is intact — only deleted or corrupted shards are written again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import nullcontext
from multiprocessing import get_context
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from data_pipelines.errors import DatasetInputError, OutputDirError
from data_pipelines.extract import ExtractSettings, cached_summary, extract_unit, init_worker, load_group
from data_pipelines.faces import FaceSettings
from data_pipelines.shards import PlannedGroup, ensure_shard, plan_shards, shard_path
from data_pipelines.sources import scan_inputs
from faceswap_pl.data.schema import MANIFEST, MAX_FRAMES_PER_GROUP, SKIPPED, Manifest
from faceswap_pl.errors import FaceSwapError

WORK = ".work"


class BuildOptionError(FaceSwapError, ValueError):
    """A build option outside its valid range."""


def _check_options(size: int, video_stride: int, max_frames_per_group: int, shard_groups: int,
                   min_track_frames: int, track_jump: float) -> None:
    checks = [
        (size >= 32, f"--size must be at least 32 pixels, got {size}"),
        (video_stride >= 1, f"--stride must be at least 1, got {video_stride}"),
        (1 <= max_frames_per_group <= MAX_FRAMES_PER_GROUP,
         f"--max-frames must be between 1 and {MAX_FRAMES_PER_GROUP} (the schema's frame names), "
         f"got {max_frames_per_group}"),
        (shard_groups >= 1, f"--shard-groups must be at least 1, got {shard_groups}"),
        (1 <= min_track_frames <= max_frames_per_group,
         f"--min-track must be between 1 and --max-frames ({max_frames_per_group}), got {min_track_frames}"),
        (track_jump > 0, f"--track-jump must be positive, got {track_jump}"),
    ]
    for ok, message in checks:
        if not ok:
            raise BuildOptionError(message + ".")


def _prepare_out(out_dir: Path) -> None:
    """Create the output folder and prove it is writable."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OutputDirError(f"Cannot write to the output folder '{out_dir}' ({reason}); pass a writable "
                             f"folder with --out.") from error


def _write_json(path: Path, data) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(temp, path)


def _progress(enabled: bool):
    if not enabled:
        return nullcontext(None)

    return Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True))


def _reason_counts(skipped: list[dict]) -> str:
    counts = Counter(s["reason"] for s in skipped)
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _extract_all(units, settings: ExtractSettings, work: Path, workers: int, progress) -> list[dict]:
    """Run extraction over every unit (finished ones come from the cache); summaries in unit order."""
    summaries: dict[int, dict] = {}
    pending = []
    for i, unit in enumerate(units):
        cached = cached_summary(work, unit, settings)
        if cached is None:
            pending.append(i)
        else:
            summaries[i] = cached
    task = progress.add_task("extracting faces", total=len(units), completed=len(summaries)) if progress else None

    def done(i: int, summary: dict) -> None:
        summaries[i] = summary
        if progress:
            progress.update(task, advance=1, description=f"extracting {units[i].name[:17]}")

    if workers <= 1 or len(pending) <= 1:
        for i in pending:  # models stay cached in this process for the next build (the demo builds two)
            done(i, extract_unit(units[i], settings, str(work)))
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=get_context("spawn"),
                                 initializer=init_worker) as pool:
            futures = {pool.submit(extract_unit, units[i], settings, str(work)): i for i in pending}
            for future in as_completed(futures):
                done(futures[future], future.result())
    if progress:
        progress.update(task, description="extracting faces")
    return [summaries[i] for i in range(len(units))]


def build_shards(inputs, out_dir, size: int = 256, detector: str = "yunet", min_face: float = 64.0,
                 min_score: float = 0.8, max_blur: float = 40.0, video_stride: int = 5,
                 max_frames_per_group: int = 32, track_jump: float = 0.5, min_track_frames: int = 2,
                 embeddings: str | None = None, shard_groups: int = 64, workers: int | None = None, seed: int = 0,
                 progress: bool = True, keep_work: bool = False) -> Manifest:
    """Build a shard dataset from folders of identity folders and/or videos (see the module docstring).

    Args:
        inputs: one input folder or a list of them (see :mod:`data_pipelines.sources` for the layout).
        out_dir: the dataset folder (shards, ``manifest.json``, ``skipped.json``).
        size: aligned crop size in pixels (ArcFace template scaled to it).
        detector: face detector name (``yunet`` or ``insightface:<dir>``).
        min_face: minimum face size, the shorter side of the detector box in source pixels.
        min_score: minimum detector score.
        max_blur: blur threshold: crops whose variance of the Laplacian (at 128 px) is below it are
            "too blurry".
        video_stride: every ``video_stride``-th video frame is used.
        max_frames_per_group: frames per group (at most 100); larger identity folders and longer tracks
            are split into several groups of the same identity.
        track_jump: a track is cut where a keypoint moves more than this many inter-ocular distances
            between sampled frames (:mod:`faceswap_pl.models.detectors.tracks`; 0.5 holds a shot up to stride 6).
        min_track_frames: video tracks with fewer kept frames are dropped ("track too short").
        embeddings: identity encoder name (e.g. ``sface``) to store ``emb.npy`` per sample, or None.
        shard_groups: groups per shard.
        workers: extraction processes (None: up to 8, one per CPU core; 0 or 1: in this process).
        seed: seed of the shuffle of groups across shards.
        progress: show rich progress bars (on stderr).
        keep_work: keep the extraction cache ``<out>/.work`` after a successful build.
    Returns:
        The manifest (also written to ``<out>/manifest.json``).
    Raises:
        DatasetInputError: an input folder is missing or empty, or every input was skipped.
        OutputDirError: the output folder cannot be written.
        BuildOptionError: an option outside its range.
    """
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    out_dir = Path(out_dir).expanduser()
    _check_options(size, video_stride, max_frames_per_group, shard_groups, min_track_frames, track_jump)
    settings = ExtractSettings(FaceSettings(size, detector, float(min_face), float(min_score), float(max_blur)),
                               video_stride, max_frames_per_group, float(track_jump), min_track_frames, embeddings)
    scan = scan_inputs(inputs, exclude=out_dir)
    _prepare_out(out_dir)
    work = out_dir / WORK
    work.mkdir(exist_ok=True)
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    started = time.perf_counter()
    with _progress(progress) as bar:
        summaries = _extract_all(scan.units, settings, work, workers, bar)
        skipped = list(scan.skipped) + [s for summary in summaries for s in summary["skipped"]]
        _write_json(out_dir / SKIPPED, skipped)
        planned = [PlannedGroup(summary["digest"], g["local"], unit.order, g["identity_name"], g["frames"])
                   for unit, summary in zip(scan.units, summaries) for g in summary["groups"]]
        where = ", ".join(f"'{p}'" for p in inputs)
        if not planned:
            raise DatasetInputError(
                f"No face passed the filters in {where} ({len(skipped)} inputs skipped: {_reason_counts(skipped)}); "
                f"expected images or videos showing faces at least {min_face:g} px large — see "
                f"{out_dir / SKIPPED}.")
        identities, shards = plan_shards(planned, shard_groups, seed)

        def load(group: PlannedGroup) -> dict:
            return load_group(work, group.digest, group.local)

        infos, kept = [], 0
        task = bar.add_task("writing shards", total=len(shards)) if bar else None
        for index, groups in enumerate(shards):
            info, was_kept = ensure_shard(shard_path(out_dir, index), groups, load, size, embeddings)
            infos.append(info)
            kept += was_kept
            if bar:
                bar.advance(task)
    _remove_stale(out_dir, len(shards))
    manifest = Manifest(size=size, shards=infos, identities=identities, groups=len(planned),
                        frames=sum(i.frames for i in infos), embedding=embeddings, embedding_vector="raw",
                        settings={"inputs": [str(Path(p).expanduser().resolve()) for p in inputs],
                                  "detector": detector, "min_face": min_face, "min_score": min_score,
                                  "max_blur": max_blur, "video_stride": video_stride,
                                  "max_frames_per_group": max_frames_per_group, "track_jump": track_jump,
                                  "min_track_frames": min_track_frames, "shard_groups": shard_groups,
                                  "seed": seed, "skipped": len(skipped)})
    _write_json(out_dir / MANIFEST, manifest.to_json())
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    if progress:
        Console(stderr=True, soft_wrap=True).print(
            f"{len(infos)} shards ({kept} kept from an earlier run), {len(identities)} identities, {len(planned)} "
            f"groups, {manifest.frames} frames, {len(skipped)} inputs skipped -> {out_dir} "
            f"({time.perf_counter() - started:.1f} s)")
    return manifest


def _remove_stale(out_dir: Path, count: int) -> None:
    """Delete shards beyond the planned count and temp files of a killed write."""
    for path in out_dir.glob("shard-*.tar*"):
        stem = path.name.split(".")[0]
        index = stem.removeprefix("shard-")
        if path.name.endswith(".tmp") or (index.isdigit() and int(index) >= count):
            path.unlink(missing_ok=True)
