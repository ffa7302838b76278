"""Export a trained swap generator: safetensors + JSON, a verified ONNX graph and a model card (`faceswap-pl export`).

The export folder holds

* ``generator.safetensors``: the generator's weights (the EMA copy when the run kept one), under the plain
  :class:`~faceswap_pl.models.aei_net.AEINet` key names, and ``generator.json``: the options that rebuild it,
  the identity encoder whose embeddings it expects and the input conventions;
* ``generator.onnx``: inputs ``target`` ``(N, 3, S, S)`` float32 and ``source_embedding`` ``(N, D)``, output
  ``swap``, dynamic batch axis; checked with onnxruntime (CPU) against torch on batches of 2 and 3;
* ``model_card.md``: configuration, metrics, source checkpoint and the sha256 of every exported file.

:func:`load_exported_generator` rebuilds the AEINet from the folder; :class:`OnnxGenerator` runs the ONNX file
with onnxruntime. ``mlflow`` and ``onnxruntime`` are imported inside the functions.

Example:
    >>> info = export_generator("outputs/1/abc/checkpoints/last.ckpt", "export")   # doctest: +SKIP
    >>> net = load_exported_generator("export")                                     # doctest: +SKIP
    >>> swap, _ = net(target, source_embedding)                                     # doctest: +SKIP
    >>> swap_onnx = OnnxGenerator("export")(target, source_embedding)               # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from faceswap_pl.argtypes import number
from faceswap_pl.errors import FaceSwapError, ModelFileError
from faceswap_pl.jsonfile import read_json
from faceswap_pl.zoo.store import sha256_of

FORMAT = "faceswap-pl-generator/1"
WEIGHTS_FILE = "generator.safetensors"
CONFIG_FILE = "generator.json"
ONNX_FILE = "generator.onnx"
CARD_FILE = "model_card.md"
INPUT_NAMES = ("target", "source_embedding")
OUTPUT_NAME = "swap"
DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
VERIFY_BATCHES = (2, 3)  # two sizes: proves the batch axis is really dynamic
EXPORT_EXPERIMENT = "faceswap-pl-exports"  # experiment of the run created by --register without a source run
ARTIFACT_PATH = "export"
CHAMPION_ALIAS = "champion"
INPUT_CONVENTIONS = {
    "target": "float32 (N, 3, S, S), RGB, NCHW, values in [-1, 1]; an aligned face crop of S px made as in "
              "training (faceswap_pl.alignment)",
    "source_embedding": "float32 (N, D), the identity encoder's features of the aligned source face (resized "
                        "as identity_resize says), L2-normalised when normalize_identity is true, else raw",
    "swap": "float32 (N, 3, S, S), RGB in [-1, 1], aligned like the target",
}


class ExportError(FaceSwapError):
    """An export could not be written, verified or registered."""


class OnnxVerificationError(ExportError):
    """The exported ONNX graph does not reproduce the torch generator within the tolerance."""


# ---------------------------------------------------------------- helpers

def _swap_only(generator):
    """``AEINet`` with the swap as its only output (the ONNX graph's signature)."""
    from torch import nn

    class SwapOnly(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.generator = net

        def forward(self, target, source_embedding):
            return self.generator(target, source_embedding)[0]

    return SwapOnly(generator).eval()


def _sample_inputs(batch: int, image_size: int, id_dim: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    target = torch.rand(batch, 3, image_size, image_size, generator=g) * 2 - 1
    embedding = torch.nn.functional.normalize(torch.randn(batch, id_dim, generator=g), dim=-1)
    return target, embedding


def _module_from(checkpoint_or_module) -> tuple[Any, str | None]:
    """``(FaceSwapModule, checkpoint path or None)``."""
    from faceswap_pl.evaluate import load_training_checkpoint
    from faceswap_pl.module import FaceSwapModule

    if isinstance(checkpoint_or_module, FaceSwapModule):
        return checkpoint_or_module, None
    if isinstance(checkpoint_or_module, (str, os.PathLike)):
        path = Path(checkpoint_or_module).expanduser()
        return load_training_checkpoint(path), str(path.resolve())
    raise ExportError(f"Cannot export a {type(checkpoint_or_module).__name__}; pass a `faceswap-pl fit` .ckpt path "
                      f"or a FaceSwapModule.")


def generator_config(module) -> dict[str, Any]:
    """The options that rebuild the module's swap generator, and what it expects as input."""
    hp = module.hparams
    generator = module.generator_ema if module.generator_ema is not None else module.generator
    return {
        "format": FORMAT,
        "backbone": generator.backbone,
        "num_aad_blocks": int(generator.num_aad_blocks),
        "image_size": int(generator.image_size),
        "width": float(hp.width),
        "id_dim": int(generator.id_dim),
        "identity_encoder": hp.identity_encoder,
        "identity_weights": Path(hp.identity_weights).name if hp.identity_weights else None,
        "normalize_identity": bool(hp.normalize_identity),
        "identity_resize": hp.identity_resize,
        "ema": module.generator_ema is not None,
        "iteration": int(module.iteration),
        "inputs": INPUT_CONVENTIONS,
    }


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelFileError(f"Generator config {path} does not exist; keep {CONFIG_FILE} next to the weights "
                             f"(`faceswap-pl export` writes both).")
    config = read_json(path, ModelFileError, "export the generator again with `faceswap-pl export`")
    missing = [k for k in ("backbone", "num_aad_blocks", "image_size", "width", "id_dim") if k not in config]
    if not isinstance(config, dict) or config.get("format") != FORMAT or missing:
        raise ModelFileError(f"{path} is not a faceswap-pl generator config (format {FORMAT!r}, missing "
                             f"{', '.join(missing) or 'nothing'}); export the generator again with `faceswap-pl export`.")
    return config


def _export_paths(dir_or_file: str | Path, suffix: str) -> tuple[Path, Path]:
    """``(file with suffix, generator.json)`` for an export folder or one of its files."""
    path = Path(dir_or_file).expanduser()
    if path.is_dir():
        return path / (WEIGHTS_FILE if suffix == ".safetensors" else ONNX_FILE), path / CONFIG_FILE
    if path.suffix == ".json":
        return path.with_suffix(suffix), path
    return path, path.with_suffix(".json")


# ---------------------------------------------------------------- loading an export

def load_exported_generator(dir_or_file: str | Path, device="cpu"):
    """The :class:`~faceswap_pl.models.aei_net.AEINet` of an export (eval mode), loaded strictly.

    Args:
        dir_or_file: the export folder, its ``generator.safetensors`` or its ``generator.json`` (the other
            file is taken from the same folder with the same stem).
        device: where to put the network.
    Returns:
        The network; ``net(target, source_embedding) -> (swap, z_att)``. Its export config is ``net.export_config``.
    Raises:
        ModelFileError: missing or foreign files. CheckpointMismatchError: weights that do not fit the config.
    """
    from faceswap_pl.models.aei_net import AEINet
    from faceswap_pl.models.checkpoint import load_checkpoint_file, load_state_dict_strict

    weights, config_path = _export_paths(dir_or_file, ".safetensors")
    if not weights.is_file():
        raise ModelFileError(f"Exported generator weights {weights} do not exist; pass an export folder written by "
                             f"`faceswap-pl export` (it holds {WEIGHTS_FILE} and {CONFIG_FILE}).")
    config = _read_config(config_path)
    net = AEINet(config["backbone"], num_aad_blocks=config["num_aad_blocks"], image_size=config["image_size"],
                 width=config["width"], id_dim=config["id_dim"])
    load_state_dict_strict(net, load_checkpoint_file(weights), f"Exported generator weights '{weights}'",
                           hint=f"The weights and {config_path.name} come from different exports or the file was "
                                f"edited; export the checkpoint again with `faceswap-pl export`.")
    net.export_config = config
    return net.eval().to(device)


class OnnxGenerator:
    """The exported ONNX generator on onnxruntime: ``OnnxGenerator(dir)(target, source_embedding) -> swap``.

    Takes and returns torch tensors (the result on the target's device); inputs are cast to float32 on the CPU
    for the session. ``providers`` defaults to onnxruntime's CPU provider.
    """

    def __init__(self, dir_or_file: str | Path, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        path, config_path = _export_paths(dir_or_file, ".onnx")
        if not path.is_file():
            raise ModelFileError(f"ONNX generator {path} does not exist; export it with `faceswap-pl export` "
                                 f"(without --no-onnx).")
        self.path = path
        self.config = _read_config(config_path) if config_path.is_file() else None
        try:
            self.session = ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelFileError(f"onnxruntime cannot open {path} ({str(error).strip()[:200]}); export it again "
                                 f"with `faceswap-pl export`.") from None
        names = [i.name for i in self.session.get_inputs()]
        if sorted(names) != sorted(INPUT_NAMES):
            raise ModelFileError(f"{path} has inputs {names}, not {list(INPUT_NAMES)}; pass a generator exported "
                                 f"by `faceswap-pl export`.")
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.image_size = shapes["target"][-1] if isinstance(shapes["target"][-1], int) else None
        self.id_dim = shapes["source_embedding"][-1] if isinstance(shapes["source_embedding"][-1], int) else None

    def __call__(self, target, source_embedding):
        import torch

        from faceswap_pl.errors import InputShapeError

        size, dim = self.image_size, self.id_dim
        if target.ndim != 4 or target.shape[1] != 3 or (size and tuple(target.shape[2:]) != (size, size)):
            raise InputShapeError(f"The ONNX generator takes targets (N, 3, {size}, {size}), got "
                                  f"{tuple(target.shape)}; resize the aligned crops to {size} px.")
        if source_embedding.ndim != 2 or (dim and source_embedding.shape[1] != dim) \
                or source_embedding.shape[0] != target.shape[0]:
            raise InputShapeError(f"The ONNX generator takes source embeddings (N={target.shape[0]}, {dim}), got "
                                  f"{tuple(source_embedding.shape)}; use the identity encoder the model was "
                                  f"trained with, one embedding per target.")
        feeds = {"target": target.detach().float().cpu().contiguous().numpy(),
                 "source_embedding": source_embedding.detach().float().cpu().contiguous().numpy()}
        (swap,) = self.session.run([OUTPUT_NAME], feeds)
        return torch.from_numpy(swap).to(target.device)


# ---------------------------------------------------------------- writing an export

def _write_onnx(generator, path: Path, image_size: int, id_dim: int, opset: int,
                tolerance: float) -> dict[int, float]:
    """Export, then compare onnxruntime with torch per verification batch size; the bad file is removed."""
    import onnxruntime as ort
    import torch

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


def run_metrics(run_id: str, tracking_uri: str | None = None) -> dict[str, float]:
    """The latest value of every metric the MLflow run logged."""
    from faceswap_pl.tracking import _tracking_client

    with _tracking_client(tracking_uri) as (client, uri):
        return dict(_get_run(client, uri, run_id).data.metrics)


def _get_run(client, uri: str, run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise
        raise FaceSwapError(f"MLflow run {run_id!r} is not in {uri}; pick a run id from `faceswap-pl runs compare` "
                            f"or pass its store with --tracking-uri.") from None


def _model_card(config: dict, files: dict[str, dict], metrics: dict[str, float], metrics_source: str | None,
                checkpoint: str | None, run_id: str | None, onnx_info: dict | None) -> str:
    s, d = config["image_size"], config["id_dim"]
    target_doc = INPUT_CONVENTIONS["target"].replace("S, S", f"{s}, {s}").replace("of S px", f"of {s} px")
    embedding_doc = INPUT_CONVENTIONS["source_embedding"].replace("(N, D)", f"(N, {d})")
    swap_doc = INPUT_CONVENTIONS["swap"].replace("S, S", f"{s}, {s}")
    lines = ["# faceswap-pl swap generator (AEI-Net)", "",
             f"Exported {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by `faceswap-pl export`.", "",
             "## Source", "",
             f"- checkpoint: `{checkpoint or '(in-memory module)'}`",
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
              "from faceswap_pl.export import load_exported_generator, OnnxGenerator",
              "net = load_exported_generator('.')          # AEINet: swap, z_att = net(target, embedding)",
              "onnx_net = OnnxGenerator('.')               # swap = onnx_net(target, embedding)",
              "```", ""]
    return "\n".join(lines)


def export_generator(checkpoint_or_module, out_dir: str | Path, *, opset: int = DEFAULT_OPSET, onnx: bool = True,
                     tolerance: float = DEFAULT_TOLERANCE, run_id: str | None = None,
                     tracking_uri: str | None = None) -> dict[str, Any]:
    """Write the swap generator of a checkpoint (or module) to ``out_dir``; see the module docstring.

    Args:
        checkpoint_or_module: a `faceswap-pl fit` ``.ckpt`` path or a ``FaceSwapModule``.
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
    module, checkpoint = _module_from(checkpoint_or_module)
    config = generator_config(module)
    source = module.generator_ema if module.generator_ema is not None else module.generator
    generator = copy.deepcopy(source).float().cpu().eval()
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportError(f"Cannot create the export folder {out} ({error.strerror}); pass a writable --out.") from None
    from safetensors.torch import save_file

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


# ---------------------------------------------------------------- MLflow: checkpoints of a run, registry

def _pick_checkpoint(paths: list[Path]) -> Path | None:
    best = sorted((p for p in paths if p.name.startswith("best") and p.suffix == ".ckpt"),
                  key=lambda p: p.stat().st_mtime if p.exists() else 0, reverse=True)
    if best:
        return best[0]
    last = [p for p in paths if p.name == "last.ckpt"]
    if last:
        return last[0]
    others = sorted((p for p in paths if p.suffix == ".ckpt"), key=lambda p: p.stat().st_mtime if p.exists() else 0,
                    reverse=True)
    return others[0] if others else None


def find_run_checkpoint(run_id: str, tracking_uri: str | None = None) -> Path:
    """The checkpoint of an MLflow training run: ``best-*.ckpt``, else ``last.ckpt``, else another ``.ckpt``.

    Looks in ``<default_root_dir>/<experiment id>/<run id>/checkpoints`` (Lightning's MLFlowLogger layout;
    ``default_root_dir`` from the run's params, else ``outputs``, relative to the current folder), then in the
    run's artifacts (a logged ``.ckpt``, downloaded).
    """
    from faceswap_pl.tracking import _tracking_client

    with _tracking_client(tracking_uri) as (client, uri):
        run = _get_run(client, uri, run_id)
        params = run.data.params
        roots = [params.get(k) for k in ("trainer.default_root_dir", "default_root_dir")] + ["outputs"]
        searched = []
        for root in dict.fromkeys(r for r in roots if r):
            folder = Path(root).expanduser() / run.info.experiment_id / run_id / "checkpoints"
            searched.append(str(folder))
            if folder.is_dir():
                found = _pick_checkpoint(list(folder.glob("*.ckpt")))
                if found is not None:
                    return found
        artifacts, pending = [], [None]
        while pending and len(artifacts) < 2000:
            for item in client.list_artifacts(run_id, pending.pop()):
                if item.is_dir:
                    pending.append(item.path)
                elif item.path.endswith(".ckpt"):
                    artifacts.append(item.path)
        chosen = _pick_checkpoint([Path(a) for a in artifacts])
        if chosen is not None:
            import mlflow.artifacts

            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=chosen.as_posix(),
                                                        tracking_uri=uri)
            return Path(local)
    raise FaceSwapError(f"MLflow run {run_id} has no checkpoint in {', '.join(searched)} nor among its artifacts; "
                        f"run the export from the folder training ran in, or pass the file with --checkpoint.")


def register_export(out_dir: str | Path, name: str, run_id: str | None = None,
                    tracking_uri: str | None = None) -> dict[str, Any]:
    """Log the export folder as artifact ``export/`` of ``run_id`` (else of a new run in experiment
    ``faceswap-pl-exports``) and register it as a new version of model ``name`` with alias ``champion``.

    Returns ``{"name", "version", "run_id", "source", "tracking_uri"}``.
    """
    from faceswap_pl.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    out = Path(out_dir)
    if not name or not name.strip():
        raise ExportError("--register needs a model name, e.g. --register ghost-unet.")
    if uri.startswith("file:"):
        raise ExportError(f"The MLflow model registry needs a database or server store, not {uri}; pass "
                          f"--tracking-uri sqlite:///mlruns.db (or an http server).")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        if run_id:
            _get_run(client, uri, run_id)
        else:
            experiment = client.get_experiment_by_name(EXPORT_EXPERIMENT)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPORT_EXPERIMENT)
            run = client.create_run(experiment_id, run_name=f"export-{name}",
                                    tags={"faceswap_pl.export": str(out.resolve())})
            run_id = run.info.run_id
            config = json.loads((out / CONFIG_FILE).read_text())
            for key in ("backbone", "num_aad_blocks", "image_size", "width", "id_dim", "identity_encoder"):
                client.log_param(run_id, key, config[key])
            client.set_terminated(run_id)
        client.log_artifacts(run_id, str(out), artifact_path=ARTIFACT_PATH)
        source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{ARTIFACT_PATH}"
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name, description="faceswap-pl swap generator (AEI-Net) exports")
        tags = {f"sha256.{p.name}": sha256_of(p) for p in sorted(out.iterdir()) if p.suffix != ".md"}
        version = client.create_model_version(name, source=source, run_id=run_id, tags=tags,
                                              description=f"faceswap-pl export of {out.resolve()}")
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version.version)
    except MlflowException as error:
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise ExportError(f"Registering {name!r} in {uri} failed ({reason}); check the store (--tracking-uri) "
                          f"and the model name.") from None
    return {"name": name, "version": str(version.version), "run_id": run_id, "source": source, "tracking_uri": uri}


# ---------------------------------------------------------------- CLI

def cmd_export(args: argparse.Namespace) -> int:
    from rich.table import Table

    from faceswap_pl.cli import _console

    console = _console()
    started = time.perf_counter()
    run_id, tracking_uri = args.run, args.tracking_uri
    if args.best:
        from faceswap_pl.sweep.launcher import best_trial_run

        run_id, study_uri, trial = best_trial_run(args.best, storage=args.storage, out=args.sweep_out)
        tracking_uri = tracking_uri or study_uri
        console.print(f"sweep {args.best}: best trial {trial.number} (objective {trial.values[0]:.4g}, {trial.params}), "
                      f"MLflow run {run_id}")
    checkpoint = Path(args.checkpoint) if args.checkpoint else find_run_checkpoint(run_id, tracking_uri)
    if run_id:
        console.print(f"run {run_id}: checkpoint {checkpoint}")
    info = export_generator(checkpoint, args.out, opset=args.opset, onnx=not args.no_onnx, tolerance=args.tolerance,
                            run_id=run_id, tracking_uri=tracking_uri)
    table = Table(title=f"Exported generator -> {info['out_dir']}")
    for column in ("file", "MB", "sha256"):
        table.add_column(column, justify="right" if column == "MB" else "left")
    for name, item in info["files"].items():
        table.add_row(name, f"{item['bytes'] / 1e6:.2f}", item["sha256"])
    table.add_row(CARD_FILE, f"{(Path(info['out_dir']) / CARD_FILE).stat().st_size / 1e6:.2f}", "")
    console.print(table)
    c = info["config"]
    console.print(f"generator: {c['backbone']}, {c['num_aad_blocks']} AAD blocks, {c['image_size']} px, width "
                  f"{c['width']}, id_dim {c['id_dim']} ({c['identity_encoder']} embeddings)"
                  f"{', EMA weights' if c['ema'] else ''}")
    if info["onnx"]:
        diffs = ", ".join(f"batch {n}: {d:.3g}" for n, d in info["onnx"]["max_abs_diff"].items())
        console.print(f"ONNX (opset {info['onnx']['opset']}) vs torch, max abs difference: {diffs} "
                      f"(tolerance {info['onnx']['tolerance']:g})")
    if args.register:
        reg = register_export(info["out_dir"], args.register, run_id=run_id, tracking_uri=tracking_uri)
        console.print(f"registered {reg['name']} version {reg['version']} (alias {CHAMPION_ALIAS}) from run "
                      f"{reg['run_id']} in {reg['tracking_uri']}")
    console.print(f"done in {time.perf_counter() - started:.1f} s; model card: {Path(info['out_dir']) / CARD_FILE}")
    return 0






def add_export_parser(sub) -> None:
    """`faceswap-pl export`."""
    export = sub.add_parser(
        "export", help="export a checkpoint's swap generator: safetensors + JSON, verified ONNX, model card",
        description="Write the swap generator of a training checkpoint (the EMA copy when kept) as "
                    f"{WEIGHTS_FILE} + {CONFIG_FILE}, {ONNX_FILE} (checked with onnxruntime against torch) and "
                    f"{CARD_FILE}; optionally register it in the MLflow model registry.")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="PATH", help="a .ckpt written by `faceswap-pl fit`")
    source.add_argument("--run", metavar="RUN_ID", help="MLflow run id: its best-*.ckpt, else last.ckpt")
    source.add_argument("--best", metavar="STUDY", help="the best completed trial of a sweep (study name or spec "
                        "YAML): its MLflow run's checkpoint, tracked in the sweep's MLflow store")
    export.add_argument("--storage", metavar="URL", help="Optuna storage of --best (default "
                        "outputs/sweeps/<name>/<name>.journal)")
    export.add_argument("--sweep-out", metavar="DIR", help="sweep folder of --best (default outputs/sweeps/<name>)")
    export.add_argument("--tracking-uri", metavar="URI",
                        help="MLflow store of --run / --register (default: $MLFLOW_TRACKING_URI, else "
                             "sqlite:///mlruns.db in the current folder)")
    export.add_argument("--out", required=True, metavar="DIR", help="export folder (created)")
    export.add_argument("--opset", type=number(int, 9, 20, problem=f"is outside 9..20 (default {DEFAULT_OPSET})"),
                        default=DEFAULT_OPSET, metavar="N",
                        help=f"ONNX opset (default {DEFAULT_OPSET})")
    export.add_argument("--no-onnx", action="store_true", help="write only safetensors, JSON and the model card")
    export.add_argument("--register", metavar="NAME",
                        help=f"log the folder to the MLflow run (or a new one) and register it as model NAME with "
                             f"alias {CHAMPION_ALIAS}")
    export.add_argument("--tolerance", default=DEFAULT_TOLERANCE, metavar="T",
                        type=number(float, above=0, problem=f"must be positive (default {DEFAULT_TOLERANCE:g})"),
                        help=f"largest ONNX vs torch max abs difference accepted (default {DEFAULT_TOLERANCE:g})")
    export.set_defaults(func=cmd_export)
