"""Where the training iteration's time goes: ``torch.profiler`` over timed iterations of the plain loop and of the
framework, the operators that take the most time, side by side.

The same setup as ``benchmarks/train_step.py`` (GHOST's configuration by default: unet, 2 AAD blocks, 256 px,
batch 2, fp32, ArcFace iresnet100, random weights): after ``--warmup`` untimed iterations, ``--iterations``
iterations run under the profiler (CPU activities); the table lists the ``--top`` operators by self CPU time
of the framework with their share of each side's total, and each side's wall time, kernel (system) time and
minor page faults per iteration. The plain loop runs first, with the C library's default ``malloc``; the
framework then sets ``cpu_allocator: retain`` (freed memory kept for reuse) as it does in training.

    python benchmarks/profile_step.py                 # 1 warm-up + 1 profiled iteration per side
    python benchmarks/profile_step.py --eye awing --top 25
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import fit_framework, plain_loop, prepare  # noqa: E402 - the benchmark next door builds the same setup


def profile_plain(cfg: dict, files: dict[str, str]):
    loop = plain_loop(cfg, files)
    batches = torch.load(files["batches"], weights_only=True)
    for batch in batches[:cfg["warmup"]]:
        loop.step(*batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        for batch in batches[cfg["warmup"]:]:
            loop.step(*batch)
        wall = (time.perf_counter() - start) / cfg["iterations"]
        kernel = _kernel(usage, cfg["iterations"])
    return prof, wall, kernel


def _kernel(before, iterations: int) -> tuple[float, float]:
    """(system seconds, minor page faults) per iteration since ``before``."""
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (after.ru_stime - before.ru_stime) / iterations, (after.ru_minflt - before.ru_minflt) / iterations


def profile_framework(cfg: dict, files: dict[str, str]):
    import lightning as L

    class Profiled(L.Callback):
        def __init__(self) -> None:
            self.prof = profile(activities=[ProfilerActivity.CPU])
            self.wall = 0.0
            self.kernel = (0.0, 0.0)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx == cfg["warmup"]:
                self.prof.__enter__()
                self.start, self.usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if batch_idx == cfg["warmup"] + cfg["iterations"] - 1:
                self.wall = (time.perf_counter() - self.start) / cfg["iterations"]
                self.kernel = _kernel(self.usage, cfg["iterations"])
                self.prof.__exit__(None, None, None)

    profiled = Profiled()
    fit_framework(cfg, files, profiled)
    return profiled.prof, profiled.wall, profiled.kernel


def _self_times(prof) -> dict[str, float]:
    return {event.key: event.self_cpu_time_total / 1e6 for event in prof.key_averages()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eye", default="none", choices=["none", "awing"])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    cfg = {"backbone": "unet", "blocks": 2, "image_size": args.image_size, "batch": args.batch, "eye": args.eye,
           "iterations": args.iterations, "warmup": args.warmup, "options": {}}
    with tempfile.TemporaryDirectory() as tmp:
        files = prepare(Path(tmp), cfg)
        plain_prof, plain_wall, plain_kernel = profile_plain(cfg, files)
        framework_prof, framework_wall, framework_kernel = profile_framework(cfg, files)
    plain, framework = _self_times(plain_prof), _self_times(framework_prof)
    plain_total, framework_total = sum(plain.values()), sum(framework.values())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, fp32; unet, 2 AAD blocks, "
          f"{args.image_size} px, batch {args.batch}, eye loss {args.eye}; {args.iterations} profiled iteration(s) "
          f"after {args.warmup} warm-up\n")
    print(f"per iteration under the profiler: wall s plain {plain_wall:.2f}, framework {framework_wall:.2f}; kernel "
          f"(system) s plain {plain_kernel[0]:.2f}, framework {framework_kernel[0]:.2f}; minor page faults plain "
          f"{plain_kernel[1]:,.0f}, framework {framework_kernel[1]:,.0f}\n")
    print("| operator | framework s/it | share | plain s/it | share |")
    print("|---|---:|---:|---:|---:|")
    for name in sorted(framework, key=framework.get, reverse=True)[:args.top]:
        f, p = framework[name] / args.iterations, plain.get(name, 0.0) / args.iterations
        print(f"| `{name}` | {f:.2f} | {100 * framework[name] / framework_total:.0f}% | {p:.2f} | "
              f"{100 * plain.get(name, 0.0) / plain_total:.0f}% |")


if __name__ == "__main__":
    main()
