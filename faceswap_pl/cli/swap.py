"""`faceswap-pl swap`: put the source face into images and videos (a file or a folder of them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from faceswap_pl.argtypes import number
from faceswap_pl.console import console as _console
from faceswap_pl.errors import MediaError
from faceswap_pl.inference.options import BACKENDS, DEFAULT_THRESHOLD, MASK_MODES

SR_CHOICES = "none | realesrgan | PATH (restoration checkpoint)"


def cmd_swap(args: argparse.Namespace) -> int:
    from faceswap_pl.imageio import read_image
    from faceswap_pl.inference.media import is_video
    from faceswap_pl.inference.pipeline import FaceSwapper, SwapModel
    from faceswap_pl.inference.swap_files import check_device, load_restorer, swap_files, targets_of

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
                           identity_weights=args.identity_weights, tracking_uri=args.tracking_uri)
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


def add_parser(sub) -> None:
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
                      "inference conventions; give its ArcFace backbone.pth with --identity-weights); or an MLflow "
                      "URI of one: models:/NAME@ALIAS (e.g. models:/demo-generator@champion), models:/NAME/VERSION, "
                      "runs:/RUN_ID/PATH")
    swap.add_argument("--tracking-uri", metavar="URI", help="MLflow store for a models:/ or runs:/ --model (default "
                      "$MLFLOW_TRACKING_URI, else sqlite:///mlruns.db)")
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

