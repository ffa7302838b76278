"""``faceswap-pl evaluate``: every metric of a generator on fixed pairs, as a report.

The harness swaps fixed (source, target) pairs chosen from shards
(:mod:`faceswap_pl.data.evalpairs`; pin them with ``--pairs-file``) with a generator -- a training
checkpoint's (its EMA copy when it has one), an export folder's, or GHOST's released ``G_*.pth`` -- and
writes to ``--out``:

- ``report.json``: the checkpoint, the pairs, every aggregate metric and every per-pair value;
- ``report.md``: the aggregate table and the worst pairs per metric;
- ``worst_<metric>.png``: grids (source | target | swap) of the worst pairs by identity cosine and by
  expression error, each row labelled with its value.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from faceswap_pl.data.evalpairs import fixed_pairs
from faceswap_pl.data.reader import resolve_shards
from faceswap_pl.errors import FaceSwapError
from faceswap_pl.inference.generators import SwapModel
from faceswap_pl.metrics import FaceEvaluator
from faceswap_pl.runs import is_model_uri
from faceswap_pl.visual import image_grid, write_png

#: per-pair metric -> True when larger is better
PER_PAIR_DIRECTION = {"id_cos": True, "expression": False, "eye": False, "pose_deg": False, "shape": False}


def evaluate_checkpoint(checkpoint: str | Path, pairs: str, out: str | Path, num_pairs: int = 64,
                        pairs_file: str | Path | None = None, batch_size: int = 16, recognizer: str = "facenet",
                        worst: int = 8, device: str = "cpu", identity_weights: str | None = None,
                        tracking_uri: str | None = None) -> dict[str, Any]:
    """Evaluate a generator on fixed pairs from ``pairs`` (shard spec) and write the report to ``out``.

    Args:
        checkpoint: a ``faceswap-pl fit`` checkpoint, a ``faceswap-pl export`` folder or a GHOST ``G_*.pth``, or an
            MLflow URI of one (``models:/NAME@ALIAS``, ``runs:/RUN_ID/PATH``; store: ``tracking_uri``).
        identity_weights: the identity encoder's weights when users bring them (GHOST: ArcFace ``backbone.pth``).
    Returns the report dictionary (also ``out/report.json``).

    The pairs are the shards' crops (ArcFace template at the generator's size). Identity vectors follow the
    generator's training conventions; for GHOST's generators that is GHOST's train.py (bilinear resize to
    112 px, raw vector), since the shard crops are not GHOST's 224-px inference crops.
    """
    if num_pairs < 1 or batch_size < 1 or worst < 0:
        raise FaceSwapError("evaluate needs --num-pairs >= 1, --batch-size >= 1 and --worst >= 0.")
    started = time.perf_counter()
    model = SwapModel.load(checkpoint, device=device, identity_weights=identity_weights, tracking_uri=tracking_uri)
    if model.identity_encoder == recognizer:
        raise FaceSwapError(f"The checkpoint was trained against {recognizer!r}; evaluate identity with another "
                            f"recognizer (--recognizer facenet).")
    if model.conventions.template == "ghost":
        model.conventions = dataclasses.replace(model.conventions, identity_resize="bilinear")
    data = fixed_pairs(resolve_shards(pairs), num_pairs, model.image_size, refs_file=pairs_file)
    evaluator = FaceEvaluator(recognizer=recognizer).to(device)
    evaluator.set_gallery(data.gallery, data.gallery_identity)
    swaps, per_pair = [], {name: [] for name in PER_PAIR_DIRECTION}
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            part = slice(start, start + batch_size)
            source, target = data.source[part].to(device), data.target[part].to(device)
            swap = model.swap(target, model.embed(source))
            values = evaluator.update(swap, source, target, data.source_identity[part].to(device))
            for name in per_pair:
                per_pair[name] += values[name].cpu().tolist()
            swaps.append(swap.cpu())
    metrics = evaluator.compute()
    swap_all = torch.cat(swaps)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    worst_lists = {}
    for name, larger_better in PER_PAIR_DIRECTION.items():
        order = sorted(range(len(data)), key=lambda i: per_pair[name][i], reverse=not larger_better)
        worst_lists[name] = order[:worst]
    for name in ("id_cos", "expression"):
        chosen = worst_lists[name]
        if chosen:
            index = torch.tensor(chosen)
            grid = image_grid([data.source[index], data.target[index], swap_all[index]],
                              titles=["source", "target", "swap"],
                              row_labels=[f"{name} {per_pair[name][i]:.3f}" for i in chosen])
            write_png(out / f"worst_{name}.png", grid)
    report = {
        "checkpoint": str(checkpoint) if is_model_uri(checkpoint) else str(Path(checkpoint).resolve()), "pairs": pairs, "num_pairs": len(data),
        "model": model.description, "recognizer": recognizer, "image_size": model.image_size, "metrics": metrics,
        "pairs_detail": [{"source": list(s), "target": list(t), **{k: per_pair[k][i] for k in per_pair}}
                         for i, (s, t) in enumerate(data.refs)],
        "worst": worst_lists, "seconds": round(time.perf_counter() - started, 2),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown_report(report))
    return report


def markdown_report(report: dict[str, Any]) -> str:
    """The human-readable report: aggregate metrics, then the worst pairs per metric."""
    lines = [f"# Evaluation of `{report['checkpoint']}`", "",
             f"{report['num_pairs']} pairs from `{report['pairs']}`, {report['image_size']} px, "
             f"identity by `{report['recognizer']}`.", "",
             f"ID retrieval searches all {report['metrics']['gallery_identities']:.0f} identities of the split "
             f"({report['metrics']['gallery_images']:.0f} gallery images, sources and targets): chance is "
             f"{report['metrics']['id_top1_chance']:.3f} for top-1 and {report['metrics']['id_top5_chance']:.3f} "
             f"for top-5.", "", "| metric | value |", "|---|---:|"]
    lines += [f"| {name} | {value:.4f} |" for name, value in report["metrics"].items()]
    for name, indices in report["worst"].items():
        if not indices:
            continue
        lines += ["", f"## Worst pairs by {name}", "", "| source | target | value |", "|---|---|---:|"]
        for i in indices:
            pair = report["pairs_detail"][i]
            lines.append(f"| {pair['source'][0]}#{pair['source'][1]} | {pair['target'][0]}#{pair['target'][1]} "
                         f"| {pair[name]:.4f} |")
    return "\n".join(lines) + "\n"
