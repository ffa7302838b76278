"""Choices of the swap command, importable without torch (the CLI's --help stays fast)."""

MASK_MODES = ("hull", "adaptive", "none")
BACKENDS = ("torch", "onnxruntime")
#: FaceNet (evaluation recognizer) cosine above which a detected face counts as the reference person
DEFAULT_THRESHOLD = 0.65
