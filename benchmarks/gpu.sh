#!/usr/bin/env bash
# The GPU checks in one short run (about 10 minutes on an H100): bf16 (and tf32) training images/s and MFU at
# GHOST's configuration, the ONNX export of a GHOST-size generator checked against torch on the device, and
# video swap frames/s. The CPU test suite never needs this. Tables go to stdout and to $OUT/gpu.md when $OUT is set.
#   bash benchmarks/gpu.sh            # from the repository root, with .venv (make venv) or the active python
set -uo pipefail  # one failing section does not stop the others
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
REPORT=${OUT:-/tmp}/gpu.md
{
echo "## $(date -u +%F) $($PY -c 'import torch; print(torch.cuda.get_device_name(), "| torch", torch.__version__)')"
echo
echo "### Training (benchmarks/gpu_train.py: unet, 2 AAD blocks, 256 px, ArcFace iresnet100 identity loss)"
$PY benchmarks/gpu_train.py --precision bf16 32 --batch 16 --iterations 20 --warmup 5
echo
echo "### ONNX export of a GHOST-size generator: onnxruntime (CUDA provider when installed, else CPU) vs torch on the device"
$PY - <<'PYEOF'
import tempfile, torch
from faceswap_pl.export import OnnxGenerator, export_generator, load_exported_generator
from faceswap_pl.training.module import FaceSwapModule
torch.manual_seed(0)
module = FaceSwapModule(backbone="unet", num_aad_blocks=2, image_size=256, width=1.0, identity_encoder="sface")
with tempfile.TemporaryDirectory() as out:
    import lightning
    checkpoint = f"{out}/random.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(),
                "pytorch-lightning_version": lightning.__version__}, checkpoint)
    info = export_generator(checkpoint, f"{out}/export")
    out = f"{out}/export"
    net = load_exported_generator(out, device="cuda")
    target = torch.rand(4, 3, 256, 256, device="cuda") * 2 - 1
    emb = torch.nn.functional.normalize(torch.randn(4, info["config"]["id_dim"], device="cuda"), dim=-1)
    with torch.no_grad():
        reference = net(target, emb)[0]
    session = OnnxGenerator(out, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    onnx = session(target, emb)
    print(f"export check (CPU onnxruntime vs CPU torch): {info['onnx']['max_abs_diff']}; "
          f"onnxruntime ({session.session.get_providers()[0]}) vs torch on {torch.cuda.get_device_name()}: "
          f"max abs diff {(onnx - reference).abs().max().item():.2e}")
PYEOF
echo
echo "### GPU-marked tests (mixed precision on the device)"
$PY -m pytest -q -p no:cacheprovider -m gpu tests/test_precision.py 2>&1 | tail -3
echo
echo "### Video swap (benchmarks/video.py, GHOST-size generator, random weights)"
$PY benchmarks/video.py --device cuda --image-size 256 --width 1 --batch 16
} 2>&1 | tee "$REPORT"
echo "report: $REPORT"
