"""Exported generators at inference: the safetensors weights rebuilt as an AEINet, the ONNX graph on onnxruntime.

Example:
    >>> net = load_exported_generator("export")                                     # doctest: +SKIP
    >>> swap, _ = net(target, source_embedding)                                     # doctest: +SKIP
    >>> swap_onnx = OnnxGenerator("export")(target, source_embedding)               # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import torch

from faceswap_pl.errors import InputShapeError, ModelFileError
from faceswap_pl.inference.export_format import (
    CONFIG_FILE,
    INPUT_NAMES,
    OUTPUT_NAME,
    WEIGHTS_FILE,
    export_paths,
    read_config,
)
from faceswap_pl.models.aei_net import AEINet
from faceswap_pl.models.importers.checkpoint import load_checkpoint_file, load_state_dict_strict


def load_exported_generator(dir_or_file: str | Path, device="cpu"):
    """The :class:`~faceswap_pl.models.aei_net.AEINet` of an export (eval mode), loaded strictly.

    Args:
        dir_or_file: the export folder, its ``generator.safetensors`` or its ``generator.json`` (the other
            file is taken from the same folder with the same stem).
        device: where to put the network.
    Returns:
        The network; ``net(target, source_embedding) -> (swap, z_att)``. Its export config is ``net.export_config``.
    Raises:
        ModelFileError: missing or foreign files. CheckpointMismatchError: weights that do not fit the config.
    """
    weights, config_path = export_paths(dir_or_file, ".safetensors")
    if not weights.is_file():
        raise ModelFileError(f"Exported generator weights {weights} do not exist; pass an export folder written by "
                             f"`faceswap-pl export` (it holds {WEIGHTS_FILE} and {CONFIG_FILE}).")
    config = read_config(config_path)
    net = AEINet(config["backbone"], num_aad_blocks=config["num_aad_blocks"], image_size=config["image_size"],
                 width=config["width"], id_dim=config["id_dim"], encoder_kwargs=config.get("backbone_kwargs"))
    load_state_dict_strict(net, load_checkpoint_file(weights), f"Exported generator weights '{weights}'",
                           hint=f"The weights and {config_path.name} come from different exports or the file was "
                                f"edited; export the checkpoint again with `faceswap-pl export`.")
    net.export_config = config
    return net.eval().to(device)


class OnnxGenerator:
    """The exported ONNX generator on onnxruntime: ``OnnxGenerator(dir)(target, source_embedding) -> swap``.

    Takes and returns torch tensors (the result on the target's device); inputs are cast to float32 on the CPU
    for the session. ``providers`` defaults to onnxruntime's CPU provider.
    """

    def __init__(self, dir_or_file: str | Path, providers: list[str] | None = None) -> None:
        path, config_path = export_paths(dir_or_file, ".onnx")
        if not path.is_file():
            raise ModelFileError(f"ONNX generator {path} does not exist; export it with `faceswap-pl export` "
                                 f"(without --no-onnx).")
        self.path = path
        self.config = read_config(config_path) if config_path.is_file() else None
        try:
            self.session = ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelFileError(f"onnxruntime cannot open {path} ({str(error).strip()[:200]}); export it again "
                                 f"with `faceswap-pl export`.") from None
        names = [i.name for i in self.session.get_inputs()]
        if sorted(names) != sorted(INPUT_NAMES):
            raise ModelFileError(f"{path} has inputs {names}, not {list(INPUT_NAMES)}; pass a generator exported "
                                 f"by `faceswap-pl export`.")
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.image_size = shapes["target"][-1] if isinstance(shapes["target"][-1], int) else None
        self.id_dim = shapes["source_embedding"][-1] if isinstance(shapes["source_embedding"][-1], int) else None

    def __call__(self, target, source_embedding):
        size, dim = self.image_size, self.id_dim
        if target.ndim != 4 or target.shape[1] != 3 or (size and tuple(target.shape[2:]) != (size, size)):
            raise InputShapeError(f"The ONNX generator takes targets (N, 3, {size}, {size}), got "
                                  f"{tuple(target.shape)}; resize the aligned crops to {size} px.")
        if source_embedding.ndim != 2 or (dim and source_embedding.shape[1] != dim) \
                or source_embedding.shape[0] != target.shape[0]:
            raise InputShapeError(f"The ONNX generator takes source embeddings (N={target.shape[0]}, {dim}), got "
                                  f"{tuple(source_embedding.shape)}; use the identity encoder the model was "
                                  f"trained with, one embedding per target.")
        feeds = {"target": target.detach().float().cpu().contiguous().numpy(),
                 "source_embedding": source_embedding.detach().float().cpu().contiguous().numpy()}
        (swap,) = self.session.run([OUTPUT_NAME], feeds)
        return torch.from_numpy(swap).to(target.device)

