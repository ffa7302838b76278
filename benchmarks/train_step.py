"""The training iteration (G step + D step) of the framework against a plain loop, side by side.

Two sides run the same iterations on the same batches and the same random weights:

* ``framework``: :class:`~faceswap_pl.training.module.FaceSwapModule` fitted by a Lightning ``Trainer`` on a
  :class:`~faceswap_pl.data.tensor_batches.TensorBatchDataModule` (no logger, no checkpoints), with the
  options given on the command line (default: ``experiments/ghost.yaml``'s);
* ``plain``: :class:`~faceswap_pl.ghost_reference.GhostReferenceLoop`, GHOST's train.py iteration in
  plain PyTorch (torch Adam, one backward per phase, the discriminator run twice on the swap, no memory
  options), in a process with the C library's default ``malloc``;
* ``plain, freed memory retained``: the same loop after :func:`faceswap_pl.runtime.retain_freed_memory`
  (what ``model.cpu_allocator=retain`` does in the framework), to show how much of the difference is that
  process setting and how much the framework's step (``--no-plain-retained`` drops it);
* ``--variant LABEL='{"option": value, ...}'`` (repeatable): more framework sides, each with these
  FaceSwapModule options on top of ``--option``'s, for a per-option table.

Each run is its own subprocess (so its peak RSS, ``ru_maxrss`` in GB = 10^9 bytes, and its process settings
are its own), and the sides alternate: plain, plain retained, framework, variants, plain, ... for
``--rounds`` rounds, so that a shared machine's drift hits all alike. Per run the first ``--warmup``
iterations are dropped and the median of the rest is kept; the table gives each side's median over the
rounds with its range, and its speed against the plain loop (plain s/it / side s/it: above 1 is faster) with
the range of the per-round ratios, and its peak RSS over the plain loop's.

The default is GHOST's configuration: unet, 2 AAD blocks, 256 px, batch 2, fp32, ArcFace iresnet100
(``Xs_orig`` at 224 px), adversarial + attribute + identity + reconstruction losses; ``--eye awing`` adds
the AWing eye loss (weight 800). ArcFace and AWing weights are random, saved in their released layouts.

    python benchmarks/train_step.py                                 # GHOST's configuration, 3 rounds
    python benchmarks/train_step.py --eye awing --rounds 3
    python benchmarks/train_step.py --option split_backward=true    # a framework option under test
    python benchmarks/train_step.py --option recompute_levels=0 --option step_in_backward=false
    python benchmarks/train_step.py --variant 'system malloc={"cpu_allocator": "system"}'
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EYE_WEIGHT = 800.0


def prepare(folder: Path, cfg: dict) -> dict[str, str]:
    """Random G, D, ArcFace (and AWing) weights and ``warmup + iterations`` batches in GHOST's layout."""
    import torch

    from faceswap_pl.models.aei_net import AEINet
    from faceswap_pl.models.discriminator import MultiscaleDiscriminator
    from faceswap_pl.models.identity.arcface import iresnet

    torch.manual_seed(0)
    paths = {name: folder / f"{name}.pt" for name in ("G", "D", "arcface", "fan", "batches")}
    torch.save(AEINet(cfg["backbone"], cfg["blocks"], image_size=cfg["image_size"], id_dim=512).state_dict(),
               paths["G"])
    torch.save(MultiscaleDiscriminator().state_dict(), paths["D"])
    torch.save(iresnet("iresnet100").state_dict(), paths["arcface"])
    if cfg["eye"] == "awing":
        from faceswap_pl.models.landmarks.awing import FAN

        torch.save(FAN().state_dict(), paths["fan"])
    g = torch.Generator().manual_seed(1)
    s, b = cfg["image_size"], cfg["batch"]
    batches = []
    for _ in range(cfg["warmup"] + cfg["iterations"]):
        Xs, Xt = torch.rand(b, 3, s, s, generator=g) * 2 - 1, torch.rand(b, 3, s, s, generator=g) * 2 - 1
        Xs_orig = torch.nn.functional.interpolate(Xs, size=(224, 224), mode="bilinear", align_corners=False)
        batches.append((Xs_orig, Xs, Xt, (torch.arange(b) == 0).long()))
    torch.save(batches, paths["batches"])
    return {k: str(v) for k, v in paths.items()}


def plain_loop(cfg: dict, files: dict[str, str]):
    """GHOST's iteration in plain PyTorch on the prepared weights."""
    import torch

    from faceswap_pl.ghost_reference import GhostReferenceLoop, GhostWeights
    from faceswap_pl.models.aei_net import AEINet
    from faceswap_pl.models.discriminator import MultiscaleDiscriminator
    from faceswap_pl.models.identity.arcface import iresnet

    G = AEINet(cfg["backbone"], cfg["blocks"], image_size=cfg["image_size"], id_dim=512)
    G.load_state_dict(torch.load(files["G"], weights_only=True))
    D = MultiscaleDiscriminator()
    D.load_state_dict(torch.load(files["D"], weights_only=True))
    arcface = iresnet("iresnet100")
    arcface.load_state_dict(torch.load(files["arcface"], weights_only=True))
    fan = None
    if cfg["eye"] == "awing":
        from faceswap_pl.models.landmarks.awing import FAN

        fan = FAN()
        fan.load_state_dict(torch.load(files["fan"], weights_only=True))
    return GhostReferenceLoop(G, D, arcface, fan, GhostWeights(eyes=EYE_WEIGHT if fan is not None else 0.0))


def run_plain(cfg: dict, files: dict[str, str], retained: bool = False) -> list[float]:
    import torch

    if retained:
        from faceswap_pl.runtime import retain_freed_memory

        if not retain_freed_memory():
            raise SystemExit("this C library has no mallopt: drop the retained plain side (--no-plain-retained)")
    loop = plain_loop(cfg, files)
    seconds = []
    for Xs_orig, Xs, Xt, same in torch.load(files["batches"], weights_only=True):
        start = time.perf_counter()
        loop.step(Xs_orig, Xs, Xt, same)
        seconds.append(time.perf_counter() - start)
    return seconds


def fit_framework(cfg: dict, files: dict[str, str], callback) -> None:
    """One epoch over the prepared batches with FaceSwapModule (``cfg["options"]``) and ``callback``."""
    import lightning as L

    from faceswap_pl.data.tensor_batches import TensorBatchDataModule
    from faceswap_pl.training.module import FaceSwapModule

    eye = {"eye_model": "awing_fan", "eye_weights": files["fan"], "w_eye": EYE_WEIGHT} if cfg["eye"] == "awing" else {}
    module = FaceSwapModule(backbone=cfg["backbone"], num_aad_blocks=cfg["blocks"], image_size=cfg["image_size"],
                            identity_encoder="arcface_iresnet100", identity_weights=files["arcface"],
                            init_generator=files["G"], init_discriminator=files["D"], **eye, **cfg["options"])
    if eye:
        module.eye  # build the frozen eye network now, as the identity network is, not inside a timed step
    trainer = L.Trainer(accelerator="cpu", devices=1, precision="32-true", max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, callbacks=[callback])
    trainer.fit(module, datamodule=TensorBatchDataModule(files["batches"], image_size=cfg["image_size"]))


def run_framework(cfg: dict, files: dict[str, str]) -> list[float]:
    timer = IterationTimer()
    fit_framework(cfg, files, timer)
    return timer.seconds


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


def run_side(side: str, cfg: dict, files: dict[str, str]) -> dict:
    if side.startswith("plain"):
        seconds = run_plain(cfg, files, retained=side == PLAIN_RETAINED)
    else:
        seconds = run_framework(cfg, files)
    steady = seconds[cfg["warmup"]:]
    return {"side": side, "seconds": seconds, "median_s": statistics.median(steady),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9}


PLAIN, PLAIN_RETAINED = "plain loop", "plain loop, freed memory retained"


def _value(text: str):
    import yaml

    return yaml.safe_load(text)  # true -> True, 3 -> 3, [identity, eye] -> a list, text -> text


def _variant(text: str) -> tuple[str, dict]:
    label, sep, options = text.partition("=")
    try:
        parsed = json.loads(options) if sep else None
    except json.JSONDecodeError as error:
        raise SystemExit(f"--variant {text!r}: the options after '=' are not JSON ({error})")
    if not label or not isinstance(parsed, dict):
        raise SystemExit(f"--variant {text!r}: write LABEL='{{\"option\": value}}', e.g. "
                         f"'no recompute={{\"recompute_levels\": 0}}'")
    return label, parsed


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eye", default="none", choices=["none", "awing"])
    parser.add_argument("--backbone", default="unet")
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a FaceSwapModule option for the framework side (repeatable)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating plain/framework rounds (3)")
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations per run (3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first iterations per run (1)")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=JSON",
                        help="another framework side with these options on top of --option's (repeatable)")
    parser.add_argument("--no-plain-retained", action="store_true",
                        help="leave out the plain loop run with freed memory retained")
    parser.add_argument("--json", action="store_true", help="also print every run's figures as JSON")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        job = json.loads(args.one)
        print(json.dumps(run_side(job["side"], job["cfg"], job["files"])))
        return
    import torch

    options = {}
    for item in args.option:
        name, _, value = item.partition("=")
        options[name] = _value(value)
    variants = dict(_variant(text) for text in args.variant)
    cfg = {"backbone": args.backbone, "blocks": args.blocks, "image_size": args.image_size, "batch": args.batch,
           "eye": args.eye, "iterations": args.iterations, "warmup": args.warmup, "options": options}
    sides = {PLAIN: (PLAIN, cfg)}
    if not args.no_plain_retained:
        sides[PLAIN_RETAINED] = (PLAIN_RETAINED, cfg)
    sides["framework"] = ("framework", cfg)
    for label, extra in variants.items():
        sides[f"framework, {label}"] = ("framework", dict(cfg, options={**options, **extra}))
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        files = prepare(Path(tmp), cfg)
        for round_ in range(args.rounds):
            for name, (side, side_cfg) in sides.items():
                proc = subprocess.run([sys.executable, __file__, "--one",
                                       json.dumps({"side": side, "cfg": side_cfg, "files": files})],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"{name} run {round_} failed:\n{proc.stderr[-3000:]}")
                runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                if args.json:
                    print(json.dumps({"name": name, **runs[name][-1]}), flush=True)
    plain = [r["median_s"] for r in runs[PLAIN]]
    plain_rss = statistics.median(r["peak_rss_gb"] for r in runs[PLAIN])
    described = ", ".join(f"{k}={v}" for k, v in options.items()) or "ghost.yaml's defaults"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, fp32; {args.backbone}, {args.blocks} "
          f"AAD blocks, {args.image_size} px, batch {args.batch}, eye loss {args.eye}; framework options: {described}; "
          f"{args.rounds} alternating rounds of {args.warmup} warm-up + {args.iterations} timed iterations\n")
    print("| side | s/it (median of rounds) | range | images/s | speed vs plain loop (per-round range) "
          "| peak RSS GB | RSS vs plain loop |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in sides:
        values = [r["median_s"] for r in runs[name]]
        ratios = [p / v for p, v in zip(plain, values)]
        rss = statistics.median(r["peak_rss_gb"] for r in runs[name])
        extra = variants.get(name.removeprefix("framework, "), {}) if name.startswith("framework, ") else {}
        label = name + (f" (`{json.dumps(extra)}`)" if extra else "")
        print(f"| {label} | {statistics.median(values):.2f} | {_spread(values)} | {args.batch / statistics.median(values):.3f} "
              f"| {statistics.median(plain) / statistics.median(values):.2f}x ({_spread(ratios)}) | {rss:.2f} "
              f"| {rss / plain_rss:.2f} |")


if __name__ == "__main__":
    main()
