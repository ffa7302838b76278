"""Start-up time of `faceswap-pl --help`: the command modules as they are (library imported inside each command)
against the same help with every library module the commands call imported first (what top-of-file imports in
the cli package would cost). Both run as fresh processes in the same rounds, alternating.

    python benchmarks/cli_startup.py [--rounds 5]

Prints a table: median and range (min-max) of the wall time per variant, and the ratio of medians.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

#: the library modules the cli's command functions import (the eager variant imports them before parsing)
LIBRARY = ("faceswap_pl.cli.lightning", "faceswap_pl.inference.pipeline", "faceswap_pl.inference.swap_files",
           "faceswap_pl.export", "faceswap_pl.runs.compare", "faceswap_pl.sweep.launcher", "faceswap_pl.zoo",
           "data_pipelines")

VARIANTS = {
    "lazy (as shipped)": "from faceswap_pl.cli import main; main(['--help'])",
    "eager (library first)": f"import {', '.join(LIBRARY)}; from faceswap_pl.cli import main; main(['--help'])",
}


def _time(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for code in VARIANTS.values():  # warm the file cache once
        _time(code)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, code in VARIANTS.items():
            times[name].append(_time(code))
    print(f"| variant | median s | range s ({args.rounds} rounds, alternating) |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f}-{max(values):.2f} |")
    lazy, eager = (statistics.median(v) for v in times.values())
    print(f"\neager / lazy: {eager / lazy:.1f}x")


if __name__ == "__main__":
    main()
