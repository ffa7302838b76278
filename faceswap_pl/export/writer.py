"""Writing an export: the generator of a training checkpoint as safetensors + JSON, a verified ONNX graph and a
model card (the format: :mod:`faceswap_pl.inference.export_format`).

The weights are the EMA copy when the run kept one. ``generator.onnx`` is checked with onnxruntime (CPU)
against torch on batches of 2 and 3 (a graph outside the tolerance is removed); the model card lists the
configuration, the metrics (of the MLflow run, or the checkpoint's evaluation report) and every file's sha256.
The checkpoint is read with plain torch (:func:`~faceswap_pl.inference.generators.read_training_checkpoint`).

Example:
    >>> info = export_generator("outputs/1/abc/checkpoints/last.ckpt", "export")   # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import onnxruntime as ort
import torch
from safetensors.torch import save_file
from torch import nn

from faceswap_pl.errors import FaceSwapError
from faceswap_pl.files import sha256_of
from faceswap_pl.inference.export_format import (
    CARD_FILE,
    CONFIG_FILE,
    DEFAULT_OPSET,
    DEFAULT_TOLERANCE,
    FORMAT,
    INPUT_CONVENTIONS,
    INPUT_NAMES,
    ONNX_FILE,
    OUTPUT_NAME,
    WEIGHTS_FILE,
)
from faceswap_pl.inference.generators import TrainingCheckpoint, read_training_checkpoint
from faceswap_pl.models.attributes.timm import architecture_kwargs
from faceswap_pl.runs.store import run_metrics

VERIFY_BATCHES = (2, 3)  # two sizes: proves the batch axis is really dynamic

class ExportError(FaceSwapError):
    """An export could not be written, verified or registered."""


class OnnxVerificationError(ExportError):
    """The exported ONNX graph does not reproduce the torch generator within the tolerance."""


def _swap_only(generator):
    """``AEINet`` with the swap as its only output (the ONNX graph's signature)."""
    class SwapOnly(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.generator = net

        def forward(self, target, source_embedding):
            return self.generator(target, source_embedding)[0]

    return SwapOnly(generator).eval()


def _sample_inputs(batch: int, image_size: int, id_dim: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(batch, 3, image_size, image_size, generator=g) * 2 - 1
    embedding = torch.nn.functional.normalize(torch.randn(batch, id_dim, generator=g), dim=-1)
    return target, embedding


def generator_config(checkpoint: TrainingCheckpoint) -> dict[str, Any]:
    """The options that rebuild a checkpoint's swap generator, and what it expects as input."""
    hp, generator = checkpoint.hparams, checkpoint.generator
    return {
        "format": FORMAT,
        "backbone": generator.backbone,
        "backbone_kwargs": architecture_kwargs(hp.get("backbone_kwargs")),
        "num_aad_blocks": int(generator.num_aad_blocks),
        "image_size": int(generator.image_size),
        "width": float(hp.get("width", 1.0)),
        "id_dim": int(generator.id_dim),
        "identity_encoder": hp["identity_encoder"],
        "identity_weights": Path(hp["identity_weights"]).name if hp.get("identity_weights") else None,
        "normalize_identity": bool(hp["normalize_identity"]),
        "identity_resize": hp["identity_resize"],
        "ema": checkpoint.ema,
        "iteration": checkpoint.iteration,
        "inputs": INPUT_CONVENTIONS,
    }


def _write_onnx(generator, path: Path, image_size: int, id_dim: int, opset: int,
                tolerance: float) -> dict[int, float]:
    """Export, then compare onnxruntime with torch per verification batch size; the bad file is removed."""
    # the TorchScript exporter folds BatchNorm into the convs *in the module it is given*: export a copy
    exported = _swap_only(copy.deepcopy(generator))
    reference = _swap_only(generator)
    sample = _sample_inputs(2, image_size, id_dim, seed=0)
    batch = {"target": {0: "batch"}, "source_embedding": {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(exported, sample, str(path), dynamo=False, opset_version=opset,
                              input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME], dynamic_axes=batch,
                              do_constant_folding=True)
    except Exception as error:
        path.unlink(missing_ok=True)
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise ExportError(f"ONNX export at opset {opset} failed ({reason}); try --opset {DEFAULT_OPSET} or skip "
                          f"ONNX with --no-onnx.") from None
    diffs: dict[int, float] = {}
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for n in VERIFY_BATCHES:
            target, embedding = _sample_inputs(n, image_size, id_dim, seed=n)
            with torch.no_grad():
                expected = reference(target, embedding).numpy()
            (got,) = session.run([OUTPUT_NAME], {"target": target.numpy(), "source_embedding": embedding.numpy()})
            if got.shape != expected.shape:
                raise OnnxVerificationError(f"The ONNX generator returned {got.shape} for a batch of {n} instead of "
                                            f"{expected.shape}; its batch axis is not dynamic, export again.")
            diffs[n] = float(abs(got - expected).max())
    except OnnxVerificationError:
        path.unlink(missing_ok=True)
        raise
    except Exception as error:
        path.unlink(missing_ok=True)
        raise OnnxVerificationError(f"onnxruntime could not run the exported {path.name} "
                                    f"({str(error).strip()[:200]}); try another --opset or --no-onnx.") from None
    worst = max(diffs.values())
    if not worst <= tolerance:  # also catches NaN
        path.unlink(missing_ok=True)
        raise OnnxVerificationError(
            f"The ONNX generator differs from torch by up to {worst:.3g} (batches {sorted(diffs)}), more than the "
            f"tolerance {tolerance:g}, so {path.name} was removed; try another --opset or raise --tolerance.")
    return diffs


def _evaluation_metrics(checkpoint: str | None) -> tuple[dict[str, float], str | None]:
    if not checkpoint:
        return {}, None
    report = Path(checkpoint).parent.parent / "evaluation" / "report.json"
    if not report.is_file():
        return {}, None
    try:
        metrics = json.loads(report.read_text()).get("metrics", {})
    except (OSError, ValueError, AttributeError):
        return {}, None
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}, str(report)


def _model_card(config: dict, files: dict[str, dict], metrics: dict[str, float], metrics_source: str | None,
                checkpoint: str | None, run_id: str | None, onnx_info: dict | None) -> str:
    s, d = config["image_size"], config["id_dim"]
    target_doc = INPUT_CONVENTIONS["target"].replace("S, S", f"{s}, {s}").replace("of S px", f"of {s} px")
    embedding_doc = INPUT_CONVENTIONS["source_embedding"].replace("(N, D)", f"(N, {d})")
    swap_doc = INPUT_CONVENTIONS["swap"].replace("S, S", f"{s}, {s}")
    lines = ["# faceswap-pl swap generator (AEI-Net)", "",
             f"Exported {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by `faceswap-pl export`.", "",
             "## Source", "",
             f"- checkpoint: `{checkpoint}`",
             f"- MLflow run: `{run_id}`" if run_id else "- MLflow run: unknown",
             f"- training iteration: {config['iteration']}",
             f"- weights: {'EMA copy of the generator' if config['ema'] else 'the generator'}", "",
             "## Configuration", "", "| option | value |", "|---|---|"]
    for key in ("backbone", "num_aad_blocks", "image_size", "width", "id_dim", "identity_encoder", "identity_weights",
                "normalize_identity", "identity_resize"):
        lines.append(f"| {key} | `{config.get(key)}` |")
    lines += ["", "## Inputs and output", "",
              f"- `target`: {target_doc}",
              f"- `source_embedding`: {embedding_doc} from `{config['identity_encoder']}`",
              f"- `swap`: {swap_doc}", "", "## Metrics", ""]
    if metrics:
        lines += [f"From {metrics_source}.", "", "| metric | value |", "|---|---:|"]
        lines += [f"| {name} | {value:.4g} |" for name, value in sorted(metrics.items())]
    else:
        lines.append("None known (no MLflow run given and no ../evaluation/report.json next to the checkpoint).")
    if onnx_info:
        diffs = ", ".join(f"batch {n}: {d:.3g}" for n, d in onnx_info["max_abs_diff"].items())
        lines += ["", "## ONNX verification", "",
                  f"opset {onnx_info['opset']}, dynamic batch axis; onnxruntime (CPU) vs torch, max abs difference "
                  f"{diffs} (tolerance {onnx_info['tolerance']:g})."]
    lines += ["", "## Files", "", "| file | bytes | sha256 |", "|---|---:|---|"]
    lines += [f"| {name} | {info['bytes']} | `{info['sha256']}` |" for name, info in files.items()]
    lines += ["", "## Use", "", "```python",
              "from faceswap_pl.inference.exported import load_exported_generator, OnnxGenerator",
              "net = load_exported_generator('.')          # AEINet: swap, z_att = net(target, embedding)",
              "onnx_net = OnnxGenerator('.')               # swap = onnx_net(target, embedding)",
              "```", ""]
    return "\n".join(lines)


def export_generator(checkpoint: str | os.PathLike, out_dir: str | Path, *, opset: int = DEFAULT_OPSET,
                     onnx: bool = True, tolerance: float = DEFAULT_TOLERANCE, run_id: str | None = None,
                     tracking_uri: str | None = None) -> dict[str, Any]:
    """Write the swap generator of a `faceswap-pl fit` checkpoint to ``out_dir``; see the module docstring.

    Args:
        checkpoint: a `faceswap-pl fit` ``.ckpt`` path.
        out_dir: export folder (created).
        opset: ONNX opset. onnx: write and verify ``generator.onnx``.
        tolerance: largest max abs difference allowed between onnxruntime and torch.
        run_id: MLflow run of the checkpoint: its metrics go into the model card.
        tracking_uri: the store of ``run_id`` (default as `faceswap-pl runs`).
    Returns:
        ``{"out_dir", "checkpoint", "run_id", "config", "files": {name: {"path", "bytes", "sha256"}},
        "onnx": {"opset", "tolerance", "max_abs_diff": {batch: diff}} or None, "metrics", "metrics_source"}``.
    """
    if not tolerance > 0:
        raise ExportError(f"--tolerance must be positive, got {tolerance}; the default is {DEFAULT_TOLERANCE:g}.")
    read = read_training_checkpoint(checkpoint)
    checkpoint = str(Path(checkpoint).expanduser().resolve())
    config = generator_config(read)
    generator = copy.deepcopy(read.generator).float().cpu().eval()
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportError(f"Cannot create the export folder {out} ({error.strerror}); pass a writable --out.") from None
    state = {k: v.detach().cpu().contiguous().clone() for k, v in generator.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": FORMAT, "config": json.dumps(config)})
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(out / WEIGHTS_FILE, 0o666 & ~umask)  # safetensors creates the file private (0600)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    written = [WEIGHTS_FILE, CONFIG_FILE]
    onnx_info = None
    if onnx:
        diffs = _write_onnx(generator, out / ONNX_FILE, config["image_size"], config["id_dim"], opset, tolerance)
        onnx_info = {"opset": opset, "tolerance": tolerance, "max_abs_diff": diffs}
        written.append(ONNX_FILE)
    else:
        (out / ONNX_FILE).unlink(missing_ok=True)  # never leave a stale graph next to new weights
    metrics, metrics_source = {}, None
    if run_id:
        metrics, metrics_source = run_metrics(run_id, tracking_uri), f"MLflow run `{run_id}` (latest values)"
    else:
        metrics, report = _evaluation_metrics(checkpoint)
        metrics_source = f"evaluation report `{report}`" if report else None
    files = {name: {"path": str(out / name), "bytes": (out / name).stat().st_size, "sha256": sha256_of(out / name)}
             for name in written}
    (out / CARD_FILE).write_text(_model_card(config, files, metrics, metrics_source, checkpoint, run_id, onnx_info))
    return {"out_dir": str(out), "checkpoint": checkpoint, "run_id": run_id, "config": config, "files": files,
            "onnx": onnx_info, "metrics": metrics, "metrics_source": metrics_source}

