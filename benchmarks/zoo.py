"""CPU cost of every zoo model: ms/image for forward and forward+backward (to the input), peak RSS.

Each model runs in its own subprocess so its peak RSS is its own. Models whose standard weights
users bring (ArcFace, AWing) run with random weights of the same layout: the cost is the same.

    python benchmarks/zoo.py                 # all models, batch 8
    python benchmarks/zoo.py --batch 4 --only sface facenet
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def _build(name: str):
    """(module, input size, differentiable?) for one benchmark row."""
    from faceswap_pl.models.identity import create_identity_encoder
    from faceswap_pl.models.landmarks import create_landmark_model

    if name in ("sface", "facenet"):
        return create_identity_encoder(name), 256, True
    if name in ("mediapipe_mesh", "mediapipe_iris"):
        return create_landmark_model(name), 256, True
    if name.startswith("arcface_iresnet"):
        from faceswap_pl.models.identity.arcface import ArcFaceEncoder, iresnet

        return ArcFaceEncoder(iresnet(name.removeprefix("arcface_"))), 256, True
    if name == "awing_fan":
        from faceswap_pl.models.landmarks.awing import FAN, AWingLandmarks

        return AWingLandmarks(FAN()), 256, True
    if name == "realesrgan_x4plus":
        from faceswap_pl.models.restoration import create_restoration

        return create_restoration(name), 64, True
    if name == "yunet":
        from faceswap_pl.models.detectors import create_detector

        return create_detector(name), 640, False
    raise SystemExit(f"unknown benchmark row {name}")


def run_one(name: str, batch: int, repeats: int) -> dict:
    import torch

    torch.manual_seed(0)
    model, size, differentiable = _build(name)
    if not differentiable:  # the detector: numpy image in, faces out
        import cv2

        from faceswap_pl import zoo

        image = cv2.cvtColor(cv2.imread(str(zoo.media_path("t1.jpg"))), cv2.COLOR_BGR2RGB)
        model.detect(image)
        start = time.perf_counter()
        for _ in range(repeats * batch):
            model.detect(image)
        ms = (time.perf_counter() - start) * 1000 / (repeats * batch)
        return {"name": name, "input": f"{image.shape[1]}x{image.shape[0]} image", "fwd_ms": ms,
                "fwdbwd_ms": float("nan"), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    x = torch.rand(batch, 3, size, size) * 2 - 1
    with torch.no_grad():
        _ = model(x)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
        fwd = (time.perf_counter() - start) * 1000 / (repeats * batch)
    x.requires_grad_(True)
    out = model(x)
    out.float().sum().backward()
    start = time.perf_counter()
    for _ in range(repeats):
        x.grad = None
        out = model(x)
        out.float().sum().backward()
    bwd = (time.perf_counter() - start) * 1000 / (repeats * batch)
    return {"name": name, "input": f"{batch}x3x{size}x{size}", "fwd_ms": fwd, "fwdbwd_ms": bwd,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


ROWS = ["sface", "facenet", "arcface_iresnet50", "arcface_iresnet100", "mediapipe_mesh", "mediapipe_iris",
        "awing_fan", "realesrgan_x4plus", "yunet"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=ROWS, choices=ROWS)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.batch, args.repeats)))
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, fp32, CPU")
    print("| model | input | forward ms/image | forward+backward ms/image | peak RSS MB |")
    print("|---|---|---|---|---|")
    for name in args.only:
        proc = subprocess.run([sys.executable, __file__, "--one", name, "--batch", str(args.batch),
                               "--repeats", str(args.repeats)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"| {name} | failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else '?'} | | | |")
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        bwd = "n/a" if np.isnan(row["fwdbwd_ms"]) else f"{row['fwdbwd_ms']:.1f}"
        print(f"| {row['name']} | {row['input']} | {row['fwd_ms']:.1f} | {bwd} | {row['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
