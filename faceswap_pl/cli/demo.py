"""`faceswap-pl demo`: the whole pipeline on the embedded defaults, offline once the zoo is fetched."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from faceswap_pl.argtypes import number
from faceswap_pl.cli.models import cmd_models_fetch
from faceswap_pl.configs import resolve_config
from faceswap_pl.console import console as _console
from faceswap_pl.errors import FaceSwapError


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole pipeline on the embedded defaults, offline once the zoo is fetched."""
    from faceswap_pl import zoo
    from faceswap_pl.cli.lightning import run_lightning

    console = _console()
    config = Path(resolve_config(args.config or "demo"))
    if not config.is_file():
        raise FaceSwapError(f"Demo config {config} not found; pass --config with a config file or a shipped "
                            f"config's name.")
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
    from faceswap_pl.inference.evaluate import evaluate_checkpoint
    from faceswap_pl.runs.store import mlflow_ui_command

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
    from faceswap_pl.imageio import read_image
    from faceswap_pl.inference.media import write_image
    from faceswap_pl.inference.pipeline import FaceSwapper, SwapModel
    from faceswap_pl.inference.swap_files import swap_files
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



def add_parser(sub) -> None:
    demo = sub.add_parser("demo", help="the whole pipeline offline: zoo, demo shards, training with MLflow, evaluation, "
                                       "export, a swapped image and video")
    demo.add_argument("--config", help="training config (default: experiments/demo.yaml)")
    demo.add_argument("--iterations", type=number(int, 1), help="training iterations (default: the config's)")
    demo.set_defaults(func=cmd_demo)
