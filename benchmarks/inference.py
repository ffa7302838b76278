"""Generator inference of the framework against a plain call, side by side, and onnxruntime beside them.

One export of a random GHOST-size generator (unet, 2 AAD blocks, 256 px; ``faceswap-pl export``'s
safetensors + ONNX) is run on the same aligned crops and identity vectors by each side, each in its own
process (so that a process setting of one side cannot help another):

* ``plain``: GHOST's inference call, ``with torch.no_grad(): G(target, embedding)[0]`` on the generator in eval
  mode (no framework code between the call and the network), with the C library's default ``malloc``;
* ``plain, freed memory retained``: the same call after :func:`faceswap_pl.runtime.retain_freed_memory`, the
  process setting the framework makes on the CPU (``--no-plain-retained`` drops it);
* ``framework``: :meth:`faceswap_pl.inference.generators.SwapModel.swap` on the export (what ``faceswap-pl swap``
  and ``Swapper`` run per batch of crops);
* ``onnxruntime``: the export's ``generator.onnx`` on onnxruntime's CPU provider (``--backend onnxruntime``).

The sides alternate within each round (plain, plain retained, framework, onnxruntime, plain, ...), ``--rounds``
rounds of ``--calls`` timed calls after ``--warmup`` untimed ones, so a shared machine's drift hits all alike.
The table gives each side's median seconds per call over the rounds with its range, images/s, the speed ratio
to the plain call (plain s / side s: above 1 is faster) with the range of the per-round ratios, and the largest
difference of its swaps from the plain call's.

    python benchmarks/inference.py                       # batch 8, 256 px, 3 rounds
    python benchmarks/inference.py --batch 1 --rounds 5
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

GHOST_SIZE = dict(backbone="unet", num_aad_blocks=2, image_size=256, width=1.0)
SIDES = ("plain", "plain, freed memory retained", "framework", "onnxruntime")


def _timed(call, calls: int, warmup: int) -> float:
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def _inputs(batch: int, size: int, id_dim: int):
    import torch

    g = torch.Generator().manual_seed(1)
    target = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    embedding = torch.nn.functional.normalize(torch.randn(batch, id_dim, generator=g), dim=-1)
    return target, embedding


def run_side(job: dict) -> dict:
    """One side in this process: its median s/call and its swaps' largest difference from the plain call's."""
    import torch

    from faceswap_pl.inference.exported import load_exported_generator

    export = Path(job["export"])
    target, embedding = _inputs(job["batch"], job["size"], job["id_dim"])
    side = job["side"]
    if side.startswith("plain"):
        if side != "plain":
            from faceswap_pl.runtime import retain_freed_memory

            retain_freed_memory()
        net = load_exported_generator(export)  # the exported AEINet, in eval mode

        def call():
            with torch.no_grad():
                return net(target, embedding)[0].clamp(-1, 1)
    else:
        from faceswap_pl.inference.generators import SwapModel

        model = SwapModel.load(export, backend="torch" if side == "framework" else "onnxruntime")

        def call():
            return model.swap(target, embedding)
    difference = (call() - torch.load(job["reference"], weights_only=True)).abs().max().item()
    return {"seconds": _timed(call, job["calls"], job["warmup"]), "difference": difference}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3, help="timed calls per side and round (3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per side and round (1)")
    parser.add_argument("--no-plain-retained", action="store_true",
                        help="leave out the plain call run with freed memory retained")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_side(json.loads(args.one))))
        return

    import lightning
    import torch

    from faceswap_pl.export import export_generator
    from faceswap_pl.inference.exported import load_exported_generator
    from faceswap_pl.training.module import FaceSwapModule

    torch.manual_seed(0)
    sides = [s for s in SIDES if not (args.no_plain_retained and s == SIDES[1])]
    medians: dict[str, list[float]] = {name: [] for name in sides}
    differences: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        module = FaceSwapModule(**GHOST_SIZE, identity_encoder="sface")
        checkpoint = Path(tmp) / "random.ckpt"
        torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(),
                    "pytorch-lightning_version": lightning.__version__}, checkpoint)
        del module
        info = export_generator(checkpoint, Path(tmp) / "export")
        export = Path(tmp) / "export"
        size, id_dim = int(info["config"]["image_size"]), int(info["config"]["id_dim"])
        target, embedding = _inputs(args.batch, size, id_dim)
        with torch.no_grad():
            reference = load_exported_generator(export)(target, embedding)[0].clamp(-1, 1)
        torch.save(reference, Path(tmp) / "reference.pt")
        job = {"export": str(export), "reference": str(Path(tmp) / "reference.pt"), "batch": args.batch,
               "size": size, "id_dim": id_dim, "calls": args.calls, "warmup": args.warmup}
        for round_ in range(args.rounds):
            for name in sides:
                proc = subprocess.run([sys.executable, __file__, "--one", json.dumps({**job, "side": name})],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"{name} run {round_} failed:\n{proc.stderr[-3000:]}")
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                medians[name].append(result["seconds"])
                differences[name] = max(differences.get(name, 0.0), result["difference"])

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, fp32; unet, 2 AAD blocks, {size} px, "
          f"batch {args.batch}; {args.rounds} alternating rounds of {args.warmup} warm-up + {args.calls} timed calls, "
          f"each side in its own process\n")
    print("| side | s/call (median of rounds) | range | images/s | speed vs plain (per-round range) | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, values in medians.items():
        ratios = [p / v for p, v in zip(medians["plain"], values)]
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {min(values):.3f}-{max(values):.3f} | {args.batch / median:.2f} | "
              f"{statistics.median(medians['plain']) / median:.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
              f"{differences[name]:.1e} |")


if __name__ == "__main__":
    main()
