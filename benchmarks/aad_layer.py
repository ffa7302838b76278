"""One AAD layer's forward + backward, eager against channels-last and ``torch.compile`` (a fused AAD), side by side.

The layer that dominates the generator's elementwise work: GHOST's highest-resolution AAD layer (64 channels,
64 attribute channels, 256 px) at batch 2 by default. Every variant runs in this process on the same inputs
after :func:`faceswap_pl.runtime.retain_freed_memory` (the framework's CPU setting), alternating within each of
``--rounds`` rounds; each round keeps the median of ``--calls`` timed forward + backward calls after one
warm-up. ``torch.compile`` (inductor, the default mode) is timed once, apart, as its compile seconds.

* ``eager``: :class:`~faceswap_pl.models.aad.AADLayer` as the generator runs it (NCHW);
* ``channels-last``: the layer and its inputs in ``torch.channels_last``;
* ``compiled``: ``torch.compile(layer)``: inductor fuses the instance norm, the modulations, the sigmoid mask
  and the blend into generated C++ loops around the 1x1 convolutions.

    python benchmarks/aad_layer.py                    # 64 channels, 256 px, batch 2, 3 rounds
    python benchmarks/aad_layer.py --channels 128 --size 128
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from faceswap_pl.models.aad import AADLayer
from faceswap_pl.runtime import retain_freed_memory

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import _timed  # noqa: E402 - the benchmark next door times its calls the same way


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--attribute-channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5, help="timed calls per variant and round (5)")
    args = parser.parse_args()
    retain_freed_memory()
    torch.manual_seed(0)
    layer = AADLayer(args.channels, args.attribute_channels, 512)
    shape = (args.batch, args.channels, args.size, args.size)
    h = torch.randn(*shape)
    z = torch.randn(args.batch, args.attribute_channels, args.size, args.size)
    e = torch.randn(args.batch, 512)

    def step_of(net, layout=torch.contiguous_format):
        hh = h.contiguous(memory_format=layout).requires_grad_(True)
        zz = z.contiguous(memory_format=layout).requires_grad_(True)

        def step():
            out = net(hh, zz, e)
            out.backward(torch.ones_like(out))
            for t in (hh, zz, *net.parameters()):
                t.grad = None
        return step

    last = AADLayer(args.channels, args.attribute_channels, 512)
    last.load_state_dict(layer.state_dict())
    last.to(memory_format=torch.channels_last)
    start = time.perf_counter()
    compiled = torch.compile(layer)
    step_of(compiled)()
    compile_seconds = time.perf_counter() - start
    variants = {"eager": step_of(layer), "channels-last": step_of(last, torch.channels_last),
                "compiled": step_of(compiled)}
    medians: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            medians[name].append(_timed(step, args.calls, warmup=1))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, fp32; AAD layer {args.channels} channels, "
          f"{args.attribute_channels} attribute channels, {args.size} px, batch {args.batch}; {args.rounds} alternating "
          f"rounds of {args.calls} timed forward + backward calls; torch.compile took {compile_seconds:.1f} s\n")
    print("| variant | ms per forward + backward (median of rounds) | range | speed vs eager (per-round range) |")
    print("|---|---:|---:|---:|")
    for name, values in medians.items():
        ratios = [e / v for e, v in zip(medians["eager"], values)]
        print(f"| {name} | {1000 * statistics.median(values):.0f} | {1000 * min(values):.0f}-{1000 * max(values):.0f} | "
              f"{statistics.median(medians['eager']) / statistics.median(values):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f}) |")


if __name__ == "__main__":
    main()
