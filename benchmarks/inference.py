"""Generator inference of the framework against a plain call, side by side, and onnxruntime beside them.

One export of a random GHOST-size generator (unet, 2 AAD blocks, 256 px; ``faceswap-pl export``'s
safetensors + ONNX) is run three ways on the same aligned crops and identity vectors:

* ``plain``: GHOST's inference call, ``with torch.no_grad(): G(target, embedding)[0]`` on the generator in eval
  mode (no framework code between the call and the network);
* ``framework``: :meth:`faceswap_pl.inference.generators.SwapModel.swap` on the export (what ``faceswap-pl swap``
  and ``Swapper`` run per batch of crops);
* ``onnxruntime``: the export's ``generator.onnx`` on onnxruntime's CPU provider (``--backend onnxruntime``).

The sides alternate within each round (plain, framework, onnxruntime, plain, ...), ``--rounds`` rounds of
``--calls`` timed calls after ``--warmup`` untimed ones, so a shared machine's drift hits all alike. The
table gives each side's median seconds per call over the rounds with its range, images/s, and the speed
ratio to the plain call (plain s / side s: above 1 is faster) with the range of the per-round ratios.

    python benchmarks/inference.py                       # batch 8, 256 px, 3 rounds
    python benchmarks/inference.py --batch 1 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning
import torch

from faceswap_pl.export import export_generator
from faceswap_pl.inference.exported import load_exported_generator
from faceswap_pl.inference.generators import SwapModel
from faceswap_pl.training.module import FaceSwapModule

GHOST_SIZE = dict(backbone="unet", num_aad_blocks=2, image_size=256, width=1.0)


def _timed(call, calls: int, warmup: int) -> float:
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3, help="timed calls per side and round (3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per side and round (1)")
    args = parser.parse_args()

    torch.manual_seed(0)
    module = FaceSwapModule(**GHOST_SIZE, identity_encoder="sface")
    with tempfile.TemporaryDirectory() as out:
        checkpoint = Path(out) / "random.ckpt"
        torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(),
                    "pytorch-lightning_version": lightning.__version__}, checkpoint)
        del module
        info = export_generator(checkpoint, Path(out) / "export")
        out = Path(out) / "export"
        framework = SwapModel.load(out)
        onnx = SwapModel.load(out, backend="onnxruntime")
        net = load_exported_generator(out)  # the same AEINet, in eval mode
        size, id_dim = framework.image_size, info["config"]["id_dim"]
        g = torch.Generator().manual_seed(1)
        target = torch.rand(args.batch, 3, size, size, generator=g) * 2 - 1
        embedding = torch.nn.functional.normalize(torch.randn(args.batch, id_dim, generator=g), dim=-1)

        def plain():
            with torch.no_grad():
                return net(target, embedding)[0]

        sides = {"plain": plain, "framework": lambda: framework.swap(target, embedding),
                 "onnxruntime": lambda: onnx.swap(target, embedding)}
        with torch.no_grad():
            reference = plain().clamp(-1, 1)
        differences = {name: (call() - reference).abs().max().item() for name, call in sides.items()}
        medians: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.rounds):
            for name, call in sides.items():
                medians[name].append(_timed(call, args.calls, args.warmup))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, fp32; unet, 2 AAD blocks, {size} px, "
          f"batch {args.batch}; {args.rounds} alternating rounds of {args.warmup} warm-up + {args.calls} timed calls\n")
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
