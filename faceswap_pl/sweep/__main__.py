"""`python -m faceswap_pl.sweep worker ...`: one sweep worker process (the launcher starts one per GPU or CPU slot)."""

from __future__ import annotations

import argparse
import signal
import sys

from faceswap_pl.sweep.worker import run_worker


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m faceswap_pl.sweep")
    parser.add_argument("role", choices=("worker",))
    parser.add_argument("--study", required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accelerator", default="cpu")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    return run_worker(args.study, args.storage, args.index, args.seed, args.accelerator)


if __name__ == "__main__":
    sys.exit(main())
