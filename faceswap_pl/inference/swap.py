"""`faceswap-pl swap`: put the source face into images and videos (a file or a folder of them)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from faceswap_pl.argtypes import number
from faceswap_pl.errors import FaceSwapError

SR_CHOICES = "none | realesrgan | PATH (restoration checkpoint)"


def load_restorer(name: str, device: str = "cpu"):
    """``--sr``: None, the zoo's Real-ESRGAN x4 (tiled), or a trained restoration checkpoint."""
    if name in ("none", "", None):
        return None
    if name == "realesrgan":
        from faceswap_pl.models.restoration import create_restoration

        return create_restoration("realesrgan_x4plus", tile=256).to(device)
    path = Path(name).expanduser()
    if not path.exists():
        raise FaceSwapError(f"--sr {name}: no such restoration model; use none, realesrgan, or the path of a "
                            f"checkpoint written by `faceswap-pl restoration fit`.")
    from faceswap_pl.models.restoration import load_restorer as load_trained

    return load_trained(path, device=device)


def check_device(name: str) -> None:
    """``--device``: a torch device string whose hardware is present."""
    import torch

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
    from faceswap_pl.inference.media import is_image, is_video

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
    from faceswap_pl.inference.media import is_video

    if many:
        suffix = ".mp4" if is_video(target) else (".jpg" if target.suffix.lower() in (".jpg", ".jpeg") else ".png")
        return out / f"{target.stem}{suffix}"
    return out


def swap_files(swapper, targets: list[Path], out: Path, console=None) -> list[dict]:
    """Swap every target into ``out`` (a file for one target, a folder for several); returns per-file results."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from faceswap_pl.inference.media import is_video, probe_video, read_image, transcode, write_image

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


def cmd_swap(args: argparse.Namespace) -> int:
    from faceswap_pl.cli import _console
    from faceswap_pl.inference.media import MediaError, is_video, read_image
    from faceswap_pl.inference.pipeline import FaceSwapper, SwapModel

    console = _console()
    check_device(args.device)
    targets = targets_of(Path(args.target))
    out = Path(args.out)
    if len(targets) == 1 and not Path(args.target).is_dir():
        video = is_video(targets[0])
        allowed = (".mp4", ".mov", ".mkv") if video else (".png", ".jpg", ".jpeg")
        if out.is_dir() or out.suffix.lower() not in allowed:
            raise MediaError(f"--out {out} must be a file name ending in {' or '.join(allowed)} for the "
                             f"{'video' if video else 'image'} {targets[0].name}.")
    source = read_image(args.source, "source image")
    reference = read_image(args.target_face, "reference image (--target-face)") if args.target_face else None
    model = SwapModel.load(args.model, backend=args.backend, device=args.device,
                           identity_weights=args.identity_weights)
    swapper = FaceSwapper(model, source, detector=args.detector, reference=reference, threshold=args.threshold,
                          all_faces=args.all_faces, mask=args.mask, smooth=args.smooth,
                          restorer=load_restorer(args.sr, args.device),
                          restore_large_only=args.sr == "realesrgan", batch_size=args.batch_size,
                          device=args.device)
    crop = f" on {model.crop_size}-px crops" if model.crop_size != model.image_size else ""
    console.print(f"model: {model.description}, {model.image_size} px{crop}; mask {args.mask}, smoothing "
                  f"±{args.smooth} frames, super-resolution {args.sr}")
    results = swap_files(swapper, targets, out, console)
    if swapper.stats.faces == 0:
        console.print("[yellow]no face in the targets matched; the outputs equal the inputs[/yellow]")
    console.print(f"done: {len(results)} file(s); outputs are tagged as synthetic content")
    return 0








def add_swap_parser(sub) -> None:
    from faceswap_pl.inference.options import BACKENDS, DEFAULT_THRESHOLD, MASK_MODES

    swap = sub.add_parser(
        "swap", help="swap the source face into images and videos",
        description="Detect, align, swap, mask and paste back the source face into an image, a video (audio, frame "
                    "rate and frame count kept; streamed, so any length fits in memory) or a folder of them. "
                    "Outputs carry a metadata tag saying they are synthetic. Example: faceswap-pl swap --source "
                    "me.jpg --target clip.mp4 --model outputs/export --out swapped.mp4")
    swap.add_argument("--source", required=True, metavar="IMAGE", help="picture of the face to put in (its largest "
                      "face)")
    swap.add_argument("--target", required=True, metavar="PATH", help="image, video, or a folder of them")
    swap.add_argument("--model", required=True, metavar="PATH", help="export folder (`faceswap-pl export`), "
                      "training checkpoint (.ckpt), or GHOST's released generator G_*.pth (swapped with GHOST's "
                      "inference conventions; give its ArcFace backbone.pth with --identity-weights)")
    swap.add_argument("--out", required=True, metavar="PATH", help="output file for one target (.png/.jpg or "
                      ".mp4), a folder for a folder of targets")
    faces = swap.add_mutually_exclusive_group()
    faces.add_argument("--target-face", metavar="IMAGE", help="swap only this person: in each frame the face "
                       "most similar to it (evaluation recognizer), if its cosine reaches --threshold")
    faces.add_argument("--all-faces", action="store_true", help="swap every detected face (default: the largest)")
    swap.add_argument("--threshold", type=number(float, -1, 1, problem="is not a cosine similarity in [-1, 1]"),
                      default=DEFAULT_THRESHOLD, metavar="COS",
                      help=f"--target-face similarity threshold (default {DEFAULT_THRESHOLD})")
    swap.add_argument("--mask", choices=MASK_MODES, default="adaptive", help="blend mask: adaptive (GHOST's rule "
                      "per track, default), hull, none (whole crop)")
    swap.add_argument("--smooth", type=number(int, 0), default=2, metavar="N",
                      help="keypoint smoothing over ±N frames within a track (default 2; 0 = off)")
    swap.add_argument("--sr", default="none", metavar="SR", help=f"restoration of swapped crops: {SR_CHOICES} "
                      f"(default none); Real-ESRGAN upscales x4 the faces larger in the frame than the model's crop, "
                      f"a trained restorer (`faceswap-pl restoration fit`) runs on every swapped crop")
    swap.add_argument("--batch-size", type=number(int, 1), default=8, metavar="N", help="faces per generator call "
                      "(default 8)")
    swap.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0 (default cpu)")
    swap.add_argument("--backend", choices=BACKENDS, default="torch", help="generator runtime: torch, or "
                      "onnxruntime on an export's generator.onnx")
    swap.add_argument("--detector", default="yunet", help="yunet (zoo, default) or insightface:<model pack dir>")
    swap.add_argument("--identity-weights", metavar="PATH", help="weights of the identity encoder for models trained "
                      "with one users bring (e.g. ArcFace backbone.pth; needed for GHOST's G_*.pth)")
    swap.set_defaults(func=cmd_swap)
