"""`faceswap-pl shards build|demo|inspect`: WebDataset face shards."""

from __future__ import annotations

import argparse
from pathlib import Path

from faceswap_pl.console import console as _console


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


def add_parser(sub) -> None:
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
                       help="cut a video track where a keypoint moves more than this many eye distances between sampled "
                            "frames (0.5)")
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

