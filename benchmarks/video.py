"""Video swap throughput and memory: end-to-end frames/s against generator-only frames/s, and peak RSS for a
short video and one 4x longer (streaming: the peak must not grow with the length).

End to end = `faceswap-pl swap` on a video: decode, YuNet detection, tracking and smoothing, alignment, the
generator, the mesh masks, paste-back and H.264 encoding with the audio copied. Generator-only = the same
generator on batches of aligned crops of the same size, nothing else. Each measurement runs in its own
subprocess so its peak RSS (``ru_maxrss``, GB = 10^9 bytes) is its own.

Without ``--model`` the generator is a randomly initialised one of the demo's shape (64 px, width 0.25,
unet, 2 AAD blocks; the cost does not depend on the weights); ``--image-size 256 --width 1`` gives GHOST's.

    python benchmarks/video.py                                   # demo-sized generator, single_face.mp4 and 4x
    python benchmarks/video.py --model outputs/1/<run>/export    # a trained export
    python benchmarks/video.py --image-size 256 --width 1 --batch 4
    python benchmarks/video.py --device cuda --batch 16 --json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_model(folder: Path, image_size: int, width: float, blocks: int) -> Path:
    """A random generator export of the given shape (safetensors only)."""
    import torch

    from faceswap_pl.export import export_generator
    from faceswap_pl.training.module import FaceSwapModule

    torch.manual_seed(0)
    module = FaceSwapModule(backbone="unet", num_aad_blocks=blocks, image_size=image_size, width=width,
                            identity_encoder="sface", d_ndf=8, d_layers=3, d_scales=1)
    export_generator(module, folder, onnx=False)
    return folder


def make_long_video(source: Path, out: Path, repeat: int) -> Path:
    """``source`` looped ``repeat`` times (frames re-encoded, audio dropped: only the length matters here)."""
    import av

    from faceswap_pl.inference.media import probe_video, read_frames

    info = probe_video(source)
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=info.fps)
        stream.width, stream.height, stream.pix_fmt = info.width, info.height, "yuv420p"
        for _ in range(repeat):
            for frame in read_frames(source):
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out


def child(args: argparse.Namespace) -> dict:
    """One measurement in this process."""
    import torch

    from faceswap_pl import zoo
    from faceswap_pl.imageio import read_image
    from faceswap_pl.inference.media import transcode
    from faceswap_pl.inference.pipeline import FaceSwapper, SwapModel

    if args.threads:
        torch.set_num_threads(args.threads)
    model = SwapModel.load(args.model, device=args.device)
    if args.child == "generator":
        size = model.image_size
        targets = torch.rand(args.batch, 3, size, size) * 2 - 1
        embedding = torch.nn.functional.normalize(torch.randn(args.batch, model.embed(targets[:1]).shape[1]), dim=-1)
        model.swap(targets, embedding)  # warm-up
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        started, frames = time.perf_counter(), 0
        while frames < args.frames:
            model.swap(targets, embedding)
            frames += args.batch
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    else:
        swapper = FaceSwapper(model, read_image(zoo.media_path("Tom_Hanks_54745.png")), mask=args.mask,
                              smooth=args.smooth, batch_size=args.batch, device=args.device)
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            info = transcode(args.video, Path(tmp) / "out.mp4", swapper.swap_frames)
            seconds = time.perf_counter() - started
        frames = info.frames
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9}


def run_child(args: argparse.Namespace, mode: str, video: Path | None, frames: int) -> dict:
    argv = [sys.executable, __file__, "--child", mode, "--model", str(args.model), "--batch", str(args.batch),
            "--device", args.device, "--mask", args.mask, "--smooth", str(args.smooth), "--frames", str(frames)]
    if video is not None:
        argv += ["--video", str(video)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{mode} measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="export folder or .ckpt (default: a random generator of --image-size/--width)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--blocks", type=int, default=2, help="AAD blocks of the random generator")
    parser.add_argument("--video", help="video to swap (default: the zoo's single_face.mp4, 72 frames)")
    parser.add_argument("--repeat", type=int, default=4, help="the longer video is the video looped this often")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--mask", default="adaptive")
    parser.add_argument("--smooth", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--child", choices=("generator", "e2e"), help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    from faceswap_pl import zoo
    from faceswap_pl.inference.media import count_frames

    label = args.model or f"random ({args.image_size} px, width {args.width}, {args.blocks} AAD blocks)"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model is None:
            args.model = make_model(tmp / "model", args.image_size, args.width, args.blocks)
        video = Path(args.video) if args.video else zoo.media_path("single_face.mp4")
        long_video = make_long_video(video, tmp / "long.mp4", args.repeat)
        frames = count_frames(video)
        rows = [("generator only", frames, run_child(args, "generator", None, frames)),
                ("end to end", frames, run_child(args, "e2e", video, frames)),
                (f"end to end, {args.repeat}x longer", frames * args.repeat, run_child(args, "e2e", long_video, 0))]
    if args.json:
        print(json.dumps([{"what": what, **row} for what, _, row in rows], indent=1))
        return
    import torch

    print(f"video {video.name} ({frames} frames), model {label}, batch {args.batch}, "
          f"mask {args.mask}, smooth {args.smooth}, device {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"| {'measurement':<28} | frames | seconds | frames/s | peak RSS GB |")
    print(f"|{'-' * 30}|-------:|--------:|---------:|------------:|")
    for what, _, row in rows:
        print(f"| {what:<28} | {row['frames']:>6} | {row['seconds']:>7.1f} | {row['fps']:>8.2f} | "
              f"{row['peak_rss_gb']:>11.2f} |")


if __name__ == "__main__":
    main()
