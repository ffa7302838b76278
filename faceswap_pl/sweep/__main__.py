"""`python -m faceswap_pl.sweep worker ...` (one per GPU) and `... trial ARGV...` (one per trial)."""

from __future__ import annotations

import argparse
import signal
import sys


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["trial"]:
        from faceswap_pl.sweep.worker import run_trial

        return run_trial(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m faceswap_pl.sweep")
    parser.add_argument("role", choices=("worker",))
    parser.add_argument("--study", required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accelerator", default="cpu")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    from faceswap_pl.sweep.worker import run_worker

    return run_worker(args.study, args.storage, args.index, args.seed, args.accelerator)


if __name__ == "__main__":
    sys.exit(main())
