"""Swapping files: a target image, video or folder into outputs, with the restorer and device the options name.

:func:`swap_files` is what `faceswap-pl swap` and the demo run: videos stream through
:func:`~faceswap_pl.inference.media.transcode` (with a progress bar), images through
:func:`~faceswap_pl.inference.media.write_image`; outputs carry the synthetic-content tag.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from faceswap_pl.errors import FaceSwapError
from faceswap_pl.imageio import read_image
from faceswap_pl.inference.media import is_image, is_video, probe_video, transcode, write_image
from faceswap_pl.models.restoration import create_restoration
from faceswap_pl.models.restoration import load_restorer as load_trained


def load_restorer(name: str, device: str = "cpu"):
    """``--sr``: None, the zoo's Real-ESRGAN x4 (tiled), or a trained restoration checkpoint."""
    if name in ("none", "", None):
        return None
    if name == "realesrgan":
        return create_restoration("realesrgan_x4plus", tile=256).to(device)
    path = Path(name).expanduser()
    if not path.exists():
        raise FaceSwapError(f"--sr {name}: no such restoration model; use none, realesrgan, or the path of a "
                            f"checkpoint written by `faceswap-pl restoration fit`.")
    return load_trained(path, device=device)


def check_device(name: str) -> None:
    """``--device``: a torch device string whose hardware is present."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FaceSwapError(f"--device {name!r} is not a torch device; use cpu, cuda or cuda:N.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FaceSwapError(f"--device {name}: this torch sees no CUDA GPU; use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FaceSwapError(f"--device {name}: there are {torch.cuda.device_count()} CUDA GPUs (0..."
                                f"{torch.cuda.device_count() - 1}).")


def targets_of(target: Path) -> list[Path]:
    if target.is_dir():
        files = sorted(p for p in target.iterdir() if p.is_file() and (is_image(p) or is_video(p)))
        if not files:
            raise FaceSwapError(f"The target folder {target} holds no images or videos (jpg, png, mp4, mov, ...).")
        return files
    if not target.exists():
        raise FaceSwapError(f"The target {target} does not exist; pass an image, a video or a folder of them.")
    if not (is_image(target) or is_video(target)):
        raise FaceSwapError(f"The target {target} is neither an image nor a video by its suffix (jpg, png, mp4, "
                            f"mov, mkv, webm, ...).")
    return [target]


def output_for(target: Path, out: Path, many: bool) -> Path:
    if many:
        suffix = ".mp4" if is_video(target) else (".jpg" if target.suffix.lower() in (".jpg", ".jpeg") else ".png")
        return out / f"{target.stem}{suffix}"
    return out


def swap_files(swapper, targets: list[Path], out: Path, console=None) -> list[dict]:
    """Swap every target into ``out`` (a file for one target, a folder for several); returns per-file results."""
    many = len(targets) > 1 or out.suffix == "" or out.is_dir()
    destinations = [output_for(target, out, many) for target in targets]
    clashes = sorted({d.name for d in destinations if destinations.count(d) > 1})
    if clashes:
        raise FaceSwapError(f"Several targets would be written to the same output ({', '.join(clashes)}), e.g. "
                            f"a.jpg and a.jpeg or a.mov and a.mp4; rename them or swap them into separate folders.")
    if many:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise FaceSwapError(f"The output folder {out} cannot be created ({error.strerror or error}); choose "
                                f"another --out.") from None
    results = []
    for target, destination in zip(targets, destinations):
        if destination.resolve() == target.resolve():
            raise FaceSwapError(f"The output {destination} is the target itself; choose another --out.")
        started, before = time.perf_counter(), swapper.stats.faces
        if is_video(target):
            info = probe_video(target)
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                          console=console, transient=True, disable=console is None) as progress:
                task = progress.add_task(f"{target.name}", total=info.frames or None)
                written = transcode(target, destination, swapper.swap_frames,
                                    on_frame=lambda: progress.advance(task))
            frames = written.frames
        else:
            image = read_image(target, "target image")
            write_image(destination, swapper.swap_image(image))
            frames = 1
        elapsed = time.perf_counter() - started
        results.append({"target": str(target), "output": str(destination), "frames": frames,
                        "faces": swapper.stats.faces - before, "seconds": elapsed})
        if console is not None:
            console.print(f"{target} -> {destination}: {frames} frame(s), {results[-1]['faces']} face(s) swapped, "
                          f"{elapsed:.1f} s")
    return results
