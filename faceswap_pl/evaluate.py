"""``faceswap-pl evaluate``: every metric of a training checkpoint on fixed pairs, as a report.

The harness swaps fixed (source, target) pairs chosen from shards
(:mod:`faceswap_pl.data.evalpairs`; pin them with ``--pairs-file``) with the checkpoint's generator
(its EMA copy when it has one) and writes to ``--out``:

- ``report.json``: the checkpoint, the pairs, every aggregate metric and every per-pair value;
- ``report.md``: the aggregate table and the worst pairs per metric;
- ``worst_<metric>.png``: grids (source | target | swap) of the worst pairs by identity cosine and by
  expression error, each row labelled with its value.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from faceswap_pl.errors import FaceSwapError
from faceswap_pl.visual import image_grid, write_png

#: per-pair metric -> True when larger is better
PER_PAIR_DIRECTION = {"id_cos": True, "expression": False, "eye": False, "pose_deg": False, "shape": False}


def load_training_checkpoint(path: str | Path):
    """A :class:`~faceswap_pl.module.FaceSwapModule` rebuilt from a ``faceswap-pl fit`` checkpoint (CPU, eval)."""
    from faceswap_pl.models.checkpoint import CheckpointNotFoundError, _torch_load, load_state_dict_strict
    from faceswap_pl.module import FaceSwapModule

    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"Checkpoint {path} does not exist; training writes them under "
                                      f"<default_root_dir>/<experiment>/<run>/checkpoints (last.ckpt, best ...).")
    raw = _torch_load(path)
    if not isinstance(raw, dict) or "hyper_parameters" not in raw or "state_dict" not in raw:
        raise FaceSwapError(f"{path} is not a faceswap-pl training checkpoint (no hyper_parameters / state_dict); "
                            f"pass a .ckpt written by `faceswap-pl fit`, or import generator weights with "
                            f"AEINet.from_ghost_checkpoint.")
    # LightningCLI adds private entries such as ``_instantiator``; they are not module options
    options = {k: v for k, v in raw["hyper_parameters"].items() if not k.startswith("_")}
    try:
        module = FaceSwapModule(**options)
    except TypeError as error:
        raise FaceSwapError(f"The hyper-parameters in {path} do not fit this faceswap-pl version ({error}); "
                            f"evaluate it with the version that trained it.") from None
    load_state_dict_strict(module, raw["state_dict"], f"training checkpoint '{path}'",
                           hint="was it written by another faceswap-pl version or edited?")
    return module.eval()


def evaluate_checkpoint(checkpoint: str | Path, pairs: str, out: str | Path, num_pairs: int = 64,
                        pairs_file: str | Path | None = None, batch_size: int = 16, recognizer: str = "facenet",
                        worst: int = 8, device: str = "cpu") -> dict[str, Any]:
    """Evaluate a checkpoint on fixed pairs from ``pairs`` (shard spec) and write the report to ``out``.

    Returns the report dictionary (also ``out/report.json``).
    """
    from faceswap_pl.data.evalpairs import fixed_pairs
    from faceswap_pl.data.reader import resolve_shards
    from faceswap_pl.metrics import FaceEvaluator

    if num_pairs < 1 or batch_size < 1 or worst < 0:
        raise FaceSwapError("evaluate needs --num-pairs >= 1, --batch-size >= 1 and --worst >= 0.")
    started = time.perf_counter()
    module = load_training_checkpoint(checkpoint).to(device)
    if module.hparams.identity_encoder == recognizer:
        raise FaceSwapError(f"The checkpoint was trained against {recognizer!r}; evaluate identity with another "
                            f"recognizer (--recognizer facenet).")
    data = fixed_pairs(resolve_shards(pairs), num_pairs, module.hparams.image_size, refs_file=pairs_file)
    evaluator = FaceEvaluator(recognizer=recognizer).to(device)
    swaps, per_pair = [], {name: [] for name in PER_PAIR_DIRECTION}
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            part = slice(start, start + batch_size)
            source, target = data.source[part].to(device), data.target[part].to(device)
            swap = module(target, module.identity(source)).float()
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
        "checkpoint": str(Path(checkpoint).resolve()), "pairs": pairs, "num_pairs": len(data),
        "recognizer": recognizer, "image_size": module.hparams.image_size, "metrics": metrics,
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
             f"identity by `{report['recognizer']}`.", "", "| metric | value |", "|---|---:|"]
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
