"""Readers of other frameworks' model files, turning them into torch state dicts or modules.

* :mod:`.checkpoint` — torch / safetensors files, read safely (``weights_only``), strict loading with a
  readable mismatch report.
* :mod:`.ghost` — GHOST's released ``G_*.pth`` / ``D_*.pth`` into :class:`~faceswap_pl.models.aei_net.AEINet`
  and the discriminator.
* :mod:`.onnx` — ONNX graphs into torch (onnx2torch) and onnxruntime sessions.
* :mod:`.tflite` — TFLite flatbuffers (MediaPipe) into a torch module.
* :mod:`.ncnn` — ncnn graphs and weights (Real-ESRGAN).
"""
