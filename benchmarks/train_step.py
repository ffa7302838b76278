"""CPU cost of one training iteration (G step + D step): s/iteration, iterations/s, images/s, peak RSS.

The step runs as training runs it: a Lightning ``Trainer`` fits :class:`~faceswap_pl.module.FaceSwapModule`
on :class:`~faceswap_pl.data.synthetic.SyntheticPairDataModule` (no logger, no checkpoints, no
validation); a callback times ``on_train_batch_start`` -> ``on_train_batch_end`` of every iteration
and the first ``--warmup`` iterations are dropped; s/it is the median of the timed iterations (the
best in brackets). Each configuration runs in its own subprocess, so its peak RSS (``getrusage``
``ru_maxrss`` in GB = 10^9 bytes, as GHOST's figures; the whole process: weights, optimizer state,
libraries) is its own.

The default is GHOST's configuration and losses: unet, 2 AAD blocks, 256 px, batch 2, fp32, identity
loss with ArcFace iresnet100, adversarial + attribute + reconstruction losses; ``--eye awing`` adds
GHOST's eye loss (AWing FAN pupil heatmaps, weight 800). ArcFace and AWing weights are user-supplied,
so the benchmark saves randomly initialised weights of the same layout to a temporary folder and
passes them the way users do (``identity_weights`` / ``eye_weights``): the cost is the same.

    python benchmarks/train_step.py                              # GHOST's configuration
    python benchmarks/train_step.py --eye none awing             # one row per eye setting
    python benchmarks/train_step.py --precision 32 bf16 --channels-last
    python benchmarks/train_step.py --recompute-levels 0           # memory / time trade-off of the module
    python benchmarks/train_step.py --compile --warmup 3           # torch.compile: the first steps compile
    python benchmarks/train_step.py --batch 2 4 --iterations 5 --json
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# GHOST's own training loop on this kind of machine (2 CPU cores, fp32, torch 2.14, random weights):
# (backbone, AAD blocks, image size, batch, eye loss) -> (s/iteration, peak RSS GB or None).
# Source: shared/reference/ghost_facts.md, "Measured on this kind of machine".
GHOST = {
    ("unet", 2, 256, 2, "none"): (11.4, 6.1),
    ("unet", 2, 256, 4, "none"): (20.9, None),
    ("unet", 1, 256, 2, "none"): (9.1, None),
    ("unet", 3, 256, 2, "none"): (12.9, None),
    ("linknet", 2, 256, 2, "none"): (9.3, None),
    ("unet", 2, 256, 2, "awing"): (17.7, 7.8),
}
EYE_MODELS = {"none": (None, 0.0), "awing": ("awing_fan", 800.0), "mediapipe": ("mediapipe_iris", 800.0)}


def save_random_weights(folder: Path, eye: str) -> dict[str, str]:
    """Random weights in the layouts users bring: ArcFace iresnet100 ``backbone.pth``, AWing ``WFLW_4HG.pth``."""
    import torch

    torch.manual_seed(0)
    paths = {"identity": folder / "backbone.pth"}
    if not paths["identity"].exists():
        from faceswap_pl.models.arcface import iresnet

        torch.save(iresnet("iresnet100").state_dict(), paths["identity"])
    if eye == "awing":
        paths["eye"] = folder / "WFLW_4HG.pth"
        if not paths["eye"].exists():
            from faceswap_pl.models.awing import FAN

            torch.save(FAN().state_dict(), paths["eye"])
    return {k: str(v) for k, v in paths.items()}


def run_one(cfg: dict, weights: dict[str, str]) -> dict:
    """Fit ``warmup + iterations`` iterations of one configuration in this process; return its figures."""
    import lightning as L
    import torch

    from faceswap_pl.data.synthetic import SyntheticPairDataModule
    from faceswap_pl.module import FaceSwapModule

    L.seed_everything(0, verbose=False)
    eye_model, w_eye = EYE_MODELS[cfg["eye"]]
    total = cfg["warmup"] + cfg["iterations"]
    module = FaceSwapModule(
        backbone=cfg["backbone"], num_aad_blocks=cfg["blocks"], image_size=cfg["image_size"], width=cfg["width"],
        identity_encoder="arcface_iresnet100", identity_weights=weights["identity"],
        eye_model=eye_model, eye_weights=weights.get("eye"), w_eye=w_eye,
        max_iterations=total, channels_last=cfg["channels_last"],
        **({} if cfg["recompute_levels"] is None else {"recompute_levels": cfg["recompute_levels"]}),
    )
    if w_eye > 0:
        module.eye  # build the frozen eye network now, as the identity network is, not inside a timed step
    if cfg["compile"]:
        module.generator.encoder.compile()
        module.generator.generator.compile()
        module.discriminator.compile()
    data = SyntheticPairDataModule(image_size=cfg["image_size"], batch_size=cfg["batch"],
                                   train_pairs=cfg["batch"] * total, num_workers=0)
    timer = IterationTimer()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision="bf16-mixed" if cfg["precision"] == "bf16" else "32-true",
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer],
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    trainer.fit(module, datamodule=data)
    steady = timer.seconds[cfg["warmup"]:]
    if not steady:
        raise SystemExit(f"no steady-state iterations: ran {len(timer.seconds)}, warmup {cfg['warmup']}")
    return {
        **cfg,
        "seconds": timer.seconds, "median_s": statistics.median(steady), "best_s": min(steady),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
        "setup_rss_gb": rss_before, "nonfinite": int(module.nonfinite_total),
        "parameters_m": sum(p.numel() for p in module.parameters()) / 1e6,
        "threads": torch.get_num_threads(),
    }


def _callback_base():
    import lightning as L

    return L.Callback


class IterationTimer(_callback_base()):
    """Wall time of every training iteration, from ``on_train_batch_start`` to ``on_train_batch_end``."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def describe(cfg: dict) -> str:
    text = f"{cfg['backbone']} {cfg['blocks']} blk, {cfg['image_size']} px, b{cfg['batch']}, eye {cfg['eye']}"
    if cfg["width"] != 1.0:
        text += f", width {cfg['width']:g}"
    text += ", fp32" if cfg["precision"] == "32" else ", bf16"
    if cfg["channels_last"]:
        text += ", channels-last"
    if cfg["compile"]:
        text += ", compile"
    if cfg["recompute_levels"] is not None:
        text += f", recompute {cfg['recompute_levels']}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[2])
    parser.add_argument("--eye", nargs="+", default=["none"], choices=list(EYE_MODELS))
    parser.add_argument("--backbone", default="unet")
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--precision", nargs="+", default=["32"], choices=["32", "bf16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the generator and discriminator")
    parser.add_argument("--recompute-levels", type=int, default=None,
                        help="FaceSwapModule.recompute_levels (default: the module's default)")
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations after the warm-up")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first iterations (more with --compile)")
    parser.add_argument("--weights-dir", help="where to keep the random ArcFace / AWing weights (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="also print each row's raw figures as JSON")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        job = json.loads(args.one)
        print(json.dumps(run_one(job["cfg"], job["weights"])))
        return
    import torch

    base = {"backbone": args.backbone, "blocks": args.blocks, "image_size": args.image_size, "width": args.width,
            "channels_last": args.channels_last, "compile": args.compile, "recompute_levels": args.recompute_levels,
            "iterations": args.iterations,
            "warmup": args.warmup}
    configs = [{**base, "batch": b, "eye": e, "precision": p}
               for b, e, p in itertools.product(args.batch, args.eye, args.precision)]

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.weights_dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        weights = save_random_weights(folder, "awing" if "awing" in args.eye else "none")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; identity loss ArcFace "
              f"iresnet100 (random weights); {args.iterations} timed iterations after {args.warmup} warm-up; "
              f"s/it is the median (best in brackets)\n")
        print("| configuration | s/it | it/s | images/s | peak RSS GB | GHOST s/it | GHOST GB "
              "| speed vs GHOST | memory vs GHOST |")
        print("|---|---|---|---|---|---|---|---|---|")
        for cfg in configs:
            proc = subprocess.run([sys.executable, __file__, "--one", json.dumps({"cfg": cfg, "weights": weights})],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "?"
                print(f"| {describe(cfg)} | failed: {last} | | | | | | | |", flush=True)
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            ghost_s, ghost_gb = GHOST.get((cfg["backbone"], cfg["blocks"], cfg["image_size"], cfg["batch"],
                                           cfg["eye"]), (None, None)) if cfg["width"] == 1.0 else (None, None)
            speed = f"{ghost_s / row['median_s']:.2f}x" if ghost_s else "n/a"
            memory = f"{row['peak_rss_gb'] / ghost_gb:.2f}x" if ghost_gb else "n/a"
            note = f" ({row['nonfinite']} non-finite)" if row["nonfinite"] else ""
            print(f"| {describe(cfg)}{note} | {row['median_s']:.2f} ({row['best_s']:.2f}) | {1 / row['median_s']:.3f} "
                  f"| {cfg['batch'] / row['median_s']:.3f} | {row['peak_rss_gb']:.2f} "
                  f"| {ghost_s if ghost_s else 'n/a'} | {ghost_gb if ghost_gb else 'n/a'} | {speed} | {memory} |",
                  flush=True)
            if args.json:
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
