"""Swap generators for inference and how faces are fed to them, from every kind of model file.

:meth:`SwapModel.load` reads

* a ``faceswap-pl fit`` checkpoint (``.ckpt``): the generator (its EMA copy when kept) is rebuilt from the
  checkpoint's hyper-parameters and weights with plain torch (:func:`read_training_checkpoint`);
* a ``faceswap-pl export`` folder: safetensors (torch) or ONNX (onnxruntime);
* GHOST's released generator ``G_*.pth`` (any other weight file): the layout is read from its keys, and it
  runs with GHOST's inference conventions (:data:`GHOST_INFERENCE`) and the ArcFace ``backbone.pth`` the
  user brings.

:class:`FaceConventions` says how a face becomes the generator's inputs: the aligned crop it is cut at
(size and template), how that crop is resized to the identity network, whether the identity vector is
normalised. Models trained here use their training conventions (ArcFace template at the model's size, as
the shards are cut); GHOST's generators use GHOST's inference (224-px crops on insightface 0.2.1's five
pose templates, the source crop scaled by 0.5 with ``align_corners=True`` for ArcFace, raw identity
vector, the target crop resized to 256 for the generator and the output back to 224).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import onnxruntime as ort
import torch
import torch.nn.functional as F

from faceswap_pl.errors import CheckpointNotFoundError, FaceSwapError, ModelFileError
from faceswap_pl.inference.exported import OnnxGenerator, load_exported_generator
from faceswap_pl.inference.options import BACKENDS
from faceswap_pl.models.aei_net import AEINet
from faceswap_pl.models.attributes.timm import architecture_kwargs
from faceswap_pl.models.identity import create_identity_encoder
from faceswap_pl.models.importers.checkpoint import load_checkpoint_file, load_state_dict_strict, read_torch_file
from faceswap_pl.models.importers.ghost import describe_state_dict
from faceswap_pl.runs import is_model_uri
from faceswap_pl.runtime import retain_freed_memory

#: hyper-parameters of checkpoints written before the GHOST conventions became options: how they trained
LEGACY_CONVENTIONS = {"normalize_identity": True, "identity_resize": "antialias", "eye_reduction": "mean",
                      "loss_denominators": "mean", "d_skip_start": 0.0}


@dataclass(frozen=True)
class FaceConventions:
    """How a detected face becomes the generator's inputs.

    Attributes:
        crop_size: side of the aligned crop faces are cut at, masked and pasted back from; resized to the
            generator's size and back when they differ.
        template: ``arcface`` (the shards' alignment) or ``ghost`` (GHOST's five pose templates).
        identity_resize: how the source crop is resized to the identity network
            (:data:`~faceswap_pl.models.identity.IDENTITY_RESIZES`).
        normalize_identity: L2-normalise the identity vector (False: raw features, as GHOST).
    """

    crop_size: int
    template: str = "arcface"
    identity_resize: str = "antialias"
    normalize_identity: bool = True


#: GHOST's inference: 224-px crops on five pose templates, ArcFace on the crop scaled by 0.5 (align_corners=True)
GHOST_INFERENCE = FaceConventions(crop_size=224, template="ghost", identity_resize="corners", normalize_identity=False)


@dataclass
class SwapModel:
    """A generator ``(target (N,3,S,S), identity vector (N,D)) -> swap (N,3,S,S)``, its identity encoder and
    the conventions faces are fed with (``conventions`` default: the ArcFace template at ``image_size``,
    antialiased resize, unit identity vectors)."""

    generator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    identity: torch.nn.Module
    image_size: int
    description: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    conventions: FaceConventions | None = None
    identity_encoder: str = ""  # the identity encoder's registry name

    def __post_init__(self) -> None:
        if self.conventions is None:
            self.conventions = FaceConventions(crop_size=self.image_size)

    @property
    def crop_size(self) -> int:
        return self.conventions.crop_size

    @torch.no_grad()
    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        """Aligned source crops (N, 3, crop, crop) in [-1, 1] -> the generator's identity vectors (N, D)."""
        features = self.identity.features(crops.to(self.device), self.conventions.identity_resize).float()
        return F.normalize(features, dim=-1) if self.conventions.normalize_identity else features

    @torch.no_grad()
    def swap(self, targets: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """Aligned target crops (N, 3, crop, crop) -> swaps of the same size, in [-1, 1].

        Crops of another size than the generator's are resized bilinearly to it and the output back (GHOST:
        224 -> 256 -> 224).
        """
        targets = targets.to(self.device)
        size = targets.shape[-1]
        if size != self.image_size:
            targets = F.interpolate(targets, size=(self.image_size, self.image_size), mode="bilinear",
                                    align_corners=False)
        out = self.generator(targets, embeddings.to(self.device)).float()
        if size != self.image_size:
            out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False)
        return out.clamp(-1, 1)

    @classmethod
    def load(cls, path: str | Path, backend: str = "torch", device: str = "cpu",
             identity_weights: str | None = None, tracking_uri: str | None = None,
             retain_memory: bool = True) -> "SwapModel":
        """Load a ``faceswap-pl fit`` checkpoint (.ckpt), a ``faceswap-pl export`` folder or a GHOST ``G_*.pth``,
        given by path or by MLflow URI (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/RUN_ID/PATH``,
        looked up in ``tracking_uri``, default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns.db``).

        On the CPU, ``retain_memory`` keeps freed memory in the process for the next batch
        (:func:`faceswap_pl.runtime.retain_freed_memory`, process-wide): the same swaps, faster.

        Raises FaceSwapError subclasses with the fix: missing path, ONNX asked of a checkpoint, an identity encoder
        whose weights the user brings but did not pass, a URI the store does not know.
        """
        if backend not in BACKENDS:
            raise FaceSwapError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
        if is_model_uri(path):
            from faceswap_pl.runs.store import download_model  # lazy: MLflow costs 1.4-2.2 s to import

            path = download_model(str(path), tracking_uri)
        path = Path(path).expanduser()
        device = torch.device(device)
        if not path.exists():
            raise ModelFileError(f"The model {path} does not exist; pass a training checkpoint (.ckpt), a folder "
                                 f"written by `faceswap-pl export`, or a GHOST generator G_*.pth.")
        if path.is_file() and backend != "torch":
            raise FaceSwapError(f"--backend {backend} needs an export folder with generator.onnx; export "
                                f"{path} first with `faceswap-pl export --checkpoint {path} --out DIR`.")
        if retain_memory and device.type == "cpu":
            retain_freed_memory()
        if path.is_file() and path.suffix == ".ckpt":
            return _from_training_checkpoint(path, device, identity_weights)
        if path.is_file():
            return _from_ghost_generator(path, device, identity_weights)
        return _from_export(path, backend, device, identity_weights)


def _identity(name: str, weights_name: str | None, identity_weights: str | None, model: Path, device):
    kwargs = {}
    if weights_name:
        if not identity_weights:
            raise ModelFileError(f"The model {model} was trained with identity encoder {name} ({weights_name}); "
                                 f"pass that file with --identity-weights PATH.")
        kwargs["weights"] = identity_weights
    return create_identity_encoder(name, **kwargs).to(device)


@dataclass
class TrainingCheckpoint:
    """What inference needs of a ``faceswap-pl fit`` checkpoint: the swap generator and the options."""

    generator: torch.nn.Module  # the EMA copy when the run kept one, in eval mode
    hparams: dict[str, Any]     # the module's options, with LEGACY_CONVENTIONS filled in for older files
    iteration: int
    ema: bool

    @property
    def conventions(self) -> FaceConventions:
        hp = self.hparams
        return FaceConventions(crop_size=int(hp["image_size"]), identity_resize=hp["identity_resize"],
                               normalize_identity=bool(hp["normalize_identity"]))


def read_checkpoint_options(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(hyper-parameters, state dict)`` of a ``faceswap-pl fit`` checkpoint, read with ``weights_only=True``.

    LightningCLI's private entries (``_instantiator``) are dropped; checkpoints written before the GHOST
    conventions became options get :data:`LEGACY_CONVENTIONS`, how they trained.
    Raises:
        CheckpointNotFoundError, CheckpointReadError, UnsafeCheckpointError: the file; FaceSwapError: not a
        training checkpoint.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointNotFoundError(f"Checkpoint {path} does not exist; training writes them under "
                                      f"<default_root_dir>/<experiment>/<run>/checkpoints (last.ckpt, best ...).")
    raw = read_torch_file(path)
    if not isinstance(raw, dict) or "hyper_parameters" not in raw or "state_dict" not in raw:
        raise FaceSwapError(f"{path} is not a faceswap-pl training checkpoint (no hyper_parameters / state_dict); "
                            f"pass a .ckpt written by `faceswap-pl fit`, or a GHOST G_*.pth generator.")
    options = {k: v for k, v in raw["hyper_parameters"].items() if not k.startswith("_")}
    return {**LEGACY_CONVENTIONS, **options}, raw["state_dict"]


def read_training_checkpoint(path: str | Path) -> TrainingCheckpoint:
    """Rebuild the swap generator of a ``faceswap-pl fit`` checkpoint with plain torch (no Lightning).

    Raises:
        as :func:`read_checkpoint_options`; CheckpointMismatchError: weights that do not fit their own options.
    """
    hparams, state = read_checkpoint_options(path)
    ema = any(k.startswith("generator_ema.") for k in state)
    prefix = "generator_ema." if ema else "generator."
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    up = weights.get("generator.up1.weight")
    if up is None or "backbone" not in hparams:
        raise FaceSwapError(f"{path} holds no swap generator ({prefix}generator.up1.weight is missing); pass a "
                            f"checkpoint written by `faceswap-pl fit`.")
    with torch.device("meta"):  # every tensor is overwritten by the strict load
        net = AEINet(hparams["backbone"], num_aad_blocks=int(hparams.get("num_aad_blocks", 2)),
                     image_size=int(hparams.get("image_size", 256)), width=float(hparams.get("width", 1.0)),
                     id_dim=int(up.shape[0]), encoder_kwargs=architecture_kwargs(hparams.get("backbone_kwargs")))
    net.to_empty(device="cpu")
    load_state_dict_strict(net, weights, f"the generator of training checkpoint '{path}'",
                           hint="was it written by another faceswap-pl version or edited?")
    iteration = state.get("iteration")
    return TrainingCheckpoint(net.eval(), hparams, int(iteration) if iteration is not None else 0, ema)


def _from_training_checkpoint(path: Path, device, identity_weights: str | None) -> SwapModel:
    checkpoint = read_training_checkpoint(path)
    hp = checkpoint.hparams
    weights = Path(hp["identity_weights"]).name if hp.get("identity_weights") else None
    identity = _identity(hp["identity_encoder"], weights, identity_weights, path, device)
    generator = checkpoint.generator.to(device)
    return SwapModel(lambda t, e: generator(t, e)[0], identity, int(generator.image_size), f"checkpoint {path}",
                     device, checkpoint.conventions, hp["identity_encoder"])


def _from_export(path: Path, backend: str, device, identity_weights: str | None) -> SwapModel:
    if backend == "torch":
        net = load_exported_generator(path, device=device)
        config, run = net.export_config, (lambda t, e: net(t, e)[0])
    else:
        cuda = device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers()
        net = OnnxGenerator(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else None)
        if net.config is None:
            raise ModelFileError(f"{path} has no generator.json next to the ONNX file; pass the whole export "
                                 f"folder written by `faceswap-pl export`.")
        config, run = net.config, net
    identity = _identity(config["identity_encoder"], config.get("identity_weights"), identity_weights, path, device)
    runtime = backend
    if backend == "onnxruntime":
        runtime += " on " + ("CUDA" if "CUDAExecutionProvider" in net.session.get_providers() else "the CPU")
    conventions = FaceConventions(crop_size=int(config["image_size"]),
                                  identity_resize=config.get("identity_resize", LEGACY_CONVENTIONS["identity_resize"]),
                                  normalize_identity=bool(config.get("normalize_identity",
                                                                     LEGACY_CONVENTIONS["normalize_identity"])))
    return SwapModel(run, identity, int(config["image_size"]), f"export {path} ({runtime})", device, conventions,
                     config["identity_encoder"])


def _from_ghost_generator(path: Path, device, identity_weights: str | None) -> SwapModel:
    state = load_checkpoint_file(path)
    what = describe_state_dict(state)
    if "generator" not in what or "faceswap-pl" in what:
        hint = (" (a faceswap-pl checkpoint must end in .ckpt)" if "faceswap-pl" in what else "")
        raise ModelFileError(f"The model {path} holds {what}, not a generator{hint}; pass a GHOST G_*.pth, a "
                             f"training checkpoint (.ckpt) or an export folder.")
    net = AEINet.from_ghost_checkpoint(path).eval().to(device)
    if net.id_dim != 512:
        raise ModelFileError(f"The model {path} takes {net.id_dim}-d identity vectors; GHOST's generators take 512-d "
                             f"ArcFace vectors. Export models trained here with `faceswap-pl export` instead.")
    if not identity_weights:
        raise ModelFileError(f"The GHOST generator {path} needs GHOST's ArcFace identity network: pass its "
                             f"backbone.pth (arcface_torch iresnet100) with --identity-weights PATH.")
    identity = create_identity_encoder("arcface_iresnet100", weights=identity_weights).to(device)
    return SwapModel(lambda t, e: net(t, e)[0], identity, int(net.image_size),
                     f"GHOST generator {path} ({what}; GHOST's inference conventions)", device, GHOST_INFERENCE,
                     "arcface_iresnet100")
