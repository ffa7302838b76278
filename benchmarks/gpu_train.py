"""Training throughput on a GPU: images/s and model FLOPs utilisation (MFU) at GHOST's configuration.

One Lightning ``fit`` of :class:`~faceswap_pl.training.module.FaceSwapModule` on synthetic pairs (unet, 2 AAD blocks,
256 px, batch 16 — GHOST's settings — with the ArcFace iresnet100 identity loss on random weights of the
standard layout). The FLOPs of one iteration (generator and discriminator steps, forward and backward, the
frozen networks included) are counted once with torch's FLOP formulas (``torch.utils.flop_counter``); MFU =
FLOPs per iteration / median seconds per iteration / the device's dense peak for the precision.

    python benchmarks/gpu_train.py                                 # bf16 on cuda:0
    python benchmarks/gpu_train.py --precision bf16 32 --batch 16 32
    python benchmarks/gpu_train.py --device cpu --image-size 64 --width 0.125 --batch 2 --iterations 2   # smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# dense tensor-core peaks, TFLOP/s (vendor datasheets): bf16 / fp32 (TF32 tensor cores for "32")
PEAK_TFLOPS = {  # more specific names first: the first key found in the device name wins
    "H100 PCIe": {"bf16": 756.0, "32": 378.0},
    "H100 NVL": {"bf16": 835.0, "32": 417.5},
    "H100": {"bf16": 989.4, "32": 494.7},
    "H200": {"bf16": 989.4, "32": 494.7},
    "A100": {"bf16": 312.0, "32": 156.0},
    "L40S": {"bf16": 362.1, "32": 183.0},
}


def peak_tflops(device_name: str, precision: str, override: float | None) -> float | None:
    if override:
        return override
    for key, peaks in PEAK_TFLOPS.items():
        if key in device_name:
            return peaks[precision]
    return None


def run_one(cfg: dict) -> dict:
    import lightning as L
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    from faceswap_pl.data.synthetic import SyntheticPairDataModule
    from faceswap_pl.models.identity.arcface import iresnet
    from faceswap_pl.training.module import FaceSwapModule

    if cfg["precision"] == "32":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    L.seed_everything(0, verbose=False)
    weights = Path(cfg["tmp"]) / "backbone.pth"
    if not weights.exists():
        torch.save(iresnet("iresnet100").state_dict(), weights)
    gpu = cfg["device"].startswith("cuda")
    precision = "bf16-mixed" if cfg["precision"] == "bf16" else "32-true"

    def fit(iterations: int, callbacks: list):
        # recompute_levels=0: no AAD layer is run twice, so the counted FLOPs are the model's (MFU, not HFU)
        module = FaceSwapModule(backbone="unet", num_aad_blocks=cfg["blocks"], image_size=cfg["image_size"],
                                width=cfg["width"], identity_encoder="arcface_iresnet100",
                                identity_weights=str(weights), max_iterations=iterations, recompute_levels=0)
        data = SyntheticPairDataModule(image_size=cfg["image_size"], batch_size=cfg["batch"],
                                       train_pairs=cfg["batch"] * iterations, num_workers=2)
        index = torch.device(cfg["device"]).index
        trainer = L.Trainer(accelerator="gpu" if gpu else "cpu", devices=[index] if gpu and index is not None else 1,
                            precision=precision, max_epochs=1,
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                            callbacks=callbacks)
        trainer.fit(module, datamodule=data)
        return module

    class Timer(L.Callback):
        def __init__(self) -> None:
            self.seconds, self._start = [], 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if gpu:
                torch.cuda.synchronize()
            self._start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if gpu:
                torch.cuda.synchronize()
            self.seconds.append(time.perf_counter() - self._start)

    class FlopMode(TorchDispatchMode):
        """Sums torch's FLOP formulas (matmuls, convolutions, attention) over every op dispatched. Unlike
        FlopCounterMode it keeps no per-module tracker, whose backward hooks cannot run inside the
        ``torch.autograd.grad`` calls of the training step."""

        def __init__(self) -> None:
            super().__init__()
            self.total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            count = flop_registry.get(func._overloadpacket)
            if count is not None:
                self.total += count(*args, **kwargs, out_val=out)
            return out

    class CountFlops(L.Callback):
        """FLOPs of the second iteration of a short fit (the first warms up)."""

        def __init__(self) -> None:
            self.flops, self._mode = 0, None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx == 1:
                self._mode = FlopMode()
                self._mode.__enter__()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if self._mode is not None:
                self._mode.__exit__(None, None, None)
                self.flops, self._mode = self._mode.total, None

    counter = CountFlops()
    fit(2, [counter])
    timer = Timer()
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    module = fit(cfg["warmup"] + cfg["iterations"], [timer])
    steady = timer.seconds[cfg["warmup"]:]
    median = statistics.median(steady)
    name = torch.cuda.get_device_name() if gpu else "cpu"
    peak = peak_tflops(name, cfg["precision"], cfg["peak_tflops"])
    return {**cfg, "device_name": name, "median_s": median, "images_per_s": cfg["batch"] / median,
            "flops_per_iteration": counter.flops, "achieved_tflops": counter.flops / median / 1e12,
            "mfu": (counter.flops / median / 1e12 / peak) if peak else None, "peak_tflops": peak,
            "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if gpu else None,
            "nonfinite": int(module.nonfinite_total)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", nargs="+", default=["bf16"], choices=["bf16", "32"])
    parser.add_argument("--batch", type=int, nargs="+", default=[16])
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--iterations", type=int, default=20, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, help="device peak for MFU when the card is not in the table")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        print("| configuration | device | s/it | images/s | TFLOP/iteration | achieved TFLOP/s | MFU | peak GPU GB |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for precision in args.precision:
            for batch in args.batch:
                cfg = {"device": args.device, "precision": precision, "batch": batch, "blocks": args.blocks,
                       "image_size": args.image_size, "width": args.width, "iterations": args.iterations,
                       "warmup": args.warmup, "peak_tflops": args.peak_tflops, "tmp": tmp}
                done = subprocess.run([sys.executable, __file__, "--one", json.dumps(cfg)], capture_output=True,
                                      text=True)
                what = f"unet {args.blocks} blk, {args.image_size} px, width {args.width:g}, b{batch}, {precision}"
                if done.returncode != 0:
                    print(f"| {what} | failed: {done.stderr.strip().splitlines()[-1][:200]} | | | | | | |")
                    continue
                row = json.loads(done.stdout.strip().splitlines()[-1])
                mfu = f"{100 * row['mfu']:.1f} %" if row["mfu"] is not None else "n/a"
                memory = f"{row['peak_memory_gb']:.1f}" if row["peak_memory_gb"] is not None else "n/a"
                print(f"| {what} | {row['device_name']} | {row['median_s']:.3f} | {row['images_per_s']:.1f} | "
                      f"{row['flops_per_iteration'] / 1e12:.2f} | {row['achieved_tflops']:.1f} | {mfu} | {memory} |",
                      flush=True)


if __name__ == "__main__":
    main()
