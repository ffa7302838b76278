"""AEI-Net: attribute encoders, AAD generator, GHOST layout and checkpoint import.

Behaviour tests run at a tiny size (64 px, width 0.125, batch 2); GHOST-size models (width 1, 256 px)
are only built on the meta device to compare key names, shapes and parameter counts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from faceswap_pl.errors import CheckpointMismatchError, InputShapeError, ModelOptionError, UnknownNameError
from faceswap_pl.models.aad import AADLayer, AADResBlock
from faceswap_pl.models.aei_net import AEINet, GhostGeneratorLayout
from faceswap_pl.models.attributes import attribute_encoder_names, create_attribute_encoder
from faceswap_pl.models.sizing import IMAGE_SIZES

GHOST_KEYS = Path(__file__).resolve().parent / "data" / "ghost_state_dict_keys.json"
BACKBONES = [n for n in attribute_encoder_names() if not n.startswith("timm:")] + ["timm:resnet18"]
GHOST_GENERATORS = [f"{b}_{n}" for b in ("unet", "linknet", "resnet") for n in (1, 2, 3)]
TINY = dict(image_size=64, width=0.125)
BATCH = 2


@pytest.fixture(scope="module")
def ghost_keys() -> dict:
    return json.loads(GHOST_KEYS.read_text())


def tiny_inputs(id_dim: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    target = torch.rand(BATCH, 3, 64, 64, generator=g) * 2 - 1
    return target, F.normalize(torch.randn(BATCH, id_dim, generator=g), dim=-1)


def meta_aei_net(name: str) -> AEINet:
    """GHOST-size AEINet for an entry name like ``unet_2``, without allocating its weights."""
    backbone, blocks = name.rsplit("_", 1)
    with torch.device("meta"):
        return AEINet(backbone, int(blocks))


# ---------------------------------------------------------------- attribute encoders


@pytest.mark.parametrize("backbone", BACKBONES)
def test_encoder_returns_one_map_per_level(backbone):
    enc = create_attribute_encoder(backbone, **TINY)
    levels = enc(tiny_inputs()[0])
    assert [tuple(z.shape) for z in levels] == [
        (BATCH, c, 2 ** (k + 1), 2 ** (k + 1)) for k, c in enumerate(enc.channels)
    ]
    assert len(levels) == 6  # log2(64): 2x2 .. 64x64


def test_timm_decoder_continues_below_the_backbone():
    # resnet18 stops at stride 32: 4x4 at 128 px, so one stride-2 conv makes the 2x2 level
    enc = create_attribute_encoder("timm:resnet18", image_size=128, width=0.125)
    assert len(enc.down) == 1 and sorted(map(int, enc.lateral)) == [4, 8, 16, 32, 64]
    levels = enc(torch.rand(BATCH, 3, 128, 128) * 2 - 1)
    assert [z.shape[-1] for z in levels] == [2, 4, 8, 16, 32, 64, 128]
    sum(z.mean() for z in levels).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


@pytest.mark.parametrize("image_size", IMAGE_SIZES)
def test_levels_follow_image_size(image_size):
    enc = create_attribute_encoder("unet", image_size=image_size, width=0.125)
    assert len(enc.channels) == int(math.log2(image_size))
    # channels are a function of resolution: every size shares the 256-px model's coarse levels
    assert enc.channels[:5] == [128, 256, 128, 64, 32]


@pytest.mark.parametrize(
    "backbone, channels",
    [
        ("unet", [1024, 2048, 1024, 512, 256, 128, 64, 64]),
        ("linknet", [1024, 1024, 512, 256, 128, 64, 32, 32]),
        ("resnet", [1024, 2048, 1024, 512, 256, 128, 64, 64]),
    ],
)
def test_ghost_encoder_channels(backbone, channels):
    with torch.device("meta"):
        assert create_attribute_encoder(backbone).channels == channels


def test_unet_last_level_is_bilinear_align_corners_upsample():
    enc = create_attribute_encoder("unet", **TINY).eval()
    levels = enc(tiny_inputs()[0])
    expected = F.interpolate(levels[-2], scale_factor=2, mode="bilinear", align_corners=True)
    torch.testing.assert_close(levels[-1], expected, rtol=0, atol=0)


@pytest.mark.parametrize("backbone", ["unet", "linknet"])
def test_skips_are_concatenated_in_unet_added_in_linknet(backbone):
    enc = create_attribute_encoder(backbone, **TINY).eval()
    x = tiny_inputs()[0]
    with torch.no_grad():
        down = [x]
        for i in range(1, 6):  # 32, 16, 8, 4, 2 px
            down.append(getattr(enc, f"conv{i}")(down[-1]))
        d = enc.deconv1
        up = d.lrelu(d.bn(d.deconv(down[5])))
        expected = torch.cat((up, down[4]), 1) if backbone == "unet" else up + down[4]
        levels = enc(x)
    torch.testing.assert_close(levels[0], down[5])
    torch.testing.assert_close(levels[1], expected)


# ---------------------------------------------------------------- AAD


def test_aad_layer_mask_selects_identity_or_attribute_branch():
    torch.manual_seed(0)
    layer = AADLayer(channels=4, attribute_channels=3, id_dim=5)
    h, z, e = torch.randn(2, 4, 6, 6), torch.randn(2, 3, 6, 6), torch.randn(2, 5)
    mean, var = h.mean((2, 3), keepdim=True), h.var((2, 3), unbiased=False, keepdim=True)
    normed = (h - mean) / torch.sqrt(var + 1e-5)
    attr = layer.conv1(z) * normed + layer.conv2(z)
    ident = layer.fc1(e)[..., None, None] * normed + layer.fc2(e)[..., None, None]
    with torch.no_grad():
        layer.conv_h.weight.zero_()
        layer.conv_h.bias.fill_(40.0)  # M = sigmoid(40) = 1 in float32
        torch.testing.assert_close(layer(h, z, e), ident)
        layer.conv_h.bias.fill_(-40.0)  # M = 0
        torch.testing.assert_close(layer(h, z, e), attr)
        layer.conv_h.bias.fill_(0.0)  # M = 1/2
        torch.testing.assert_close(layer(h, z, e), (attr + ident) / 2)


def test_aad_resblock_shortcut():
    z, e = torch.randn(1, 3, 4, 4), torch.randn(1, 5)
    same = AADResBlock(4, 4, 3, 5, num_blocks=2)
    assert same.last_add_block is None
    with torch.no_grad():
        same.add_blocks[5].weight.zero_()  # the residual branch's last conv -> output = input
    h = torch.randn(1, 4, 4, 4)
    torch.testing.assert_close(same(h, z, e), h)
    change = AADResBlock(4, 2, 3, 5, num_blocks=3)
    assert [type(m).__name__ for m in change.add_blocks] == ["AADLayer", "ReLU", "Conv2d"] * 3
    assert [m.out_channels for m in change.add_blocks[2::3]] == [4, 4, 2]
    assert change(h, z, e).shape == (1, 2, 4, 4)


# ---------------------------------------------------------------- AEINet


@pytest.mark.parametrize("num_aad_blocks", [1, 2, 3])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_forward_backward(backbone, num_aad_blocks):
    net = AEINet(backbone, num_aad_blocks, **TINY)
    target, e = tiny_inputs()
    y, z_att = net(target, e)
    assert y.shape == target.shape and y.abs().max() <= 1
    assert [tuple(z.shape[1:2]) for z in z_att] == [(c,) for c in net.encoder.channels]
    (y.square().mean() + sum(z.square().mean() for z in z_att)).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"


def test_get_attr_matches_forward_attributes():
    net = AEINet("linknet", 1, **TINY).eval()
    target, e = tiny_inputs()
    _, z_att = net(target, e)
    for a, b in zip(net.get_attr(target), z_att):
        torch.testing.assert_close(a, b)


def test_id_dim_is_configurable():
    net = AEINet("unet", 1, id_dim=128, **TINY)
    target, e = tiny_inputs(id_dim=128)
    assert net(target, e)[0].shape == target.shape
    assert net.generator.AADBlk1.add_blocks[0].fc1.weight.shape[1] == 128
    with pytest.raises(InputShapeError, match=r"id_dim=512"):
        net(target, torch.randn(BATCH, 512))


def test_identity_changes_the_output():
    net = AEINet("unet", 1, **TINY).eval()
    with torch.no_grad():  # GHOST's N(0, 0.001) init makes identity effects tiny; enlarge them
        for name, p in net.generator.named_parameters():
            if ".fc" in name and name.endswith("weight"):
                p.normal_(0, 0.3)
    target, e = tiny_inputs()
    y1, z1 = net(target, e)
    y2, z2 = net(target, e.flip(0))
    assert (y1 - y2).abs().max() > 1e-3
    torch.testing.assert_close(z1[0], z2[0])  # the attributes do not see the identity


@pytest.mark.parametrize("entry", GHOST_GENERATORS)
def test_ghost_state_dict_keys_and_shapes(entry, ghost_keys):
    net = meta_aei_net(entry)
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert ours == ghost_keys[entry]
    assert sum(p.numel() for p in net.parameters()) == ghost_keys["_meta"][entry]["n_params"]


@pytest.mark.parametrize("blocks, millions", [(1, 128.5), (2, 184.3), (3, 240.2)])
def test_ghost_parameter_counts(blocks, millions):
    net = meta_aei_net(f"unet_{blocks}")
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 1) == millions
    assert round(sum(p.numel() for p in net.encoder.parameters()) / 1e6, 1) == 67.1


@pytest.mark.parametrize("entry", GHOST_GENERATORS)
def test_ghost_layout_is_inferred_from_keys(entry, ghost_keys):
    shapes = {k: torch.empty(v, device="meta") for k, v in ghost_keys[entry].items()}
    backbone, blocks = entry.rsplit("_", 1)
    assert GhostGeneratorLayout.infer(shapes) == GhostGeneratorLayout(backbone, int(blocks), 512, 256, 1.0)


@pytest.mark.parametrize("backbone", ["unet", "linknet", "resnet"])
def test_from_ghost_checkpoint_round_trip(backbone, tmp_path):
    net = AEINet(backbone, 2, **TINY)
    target, e = tiny_inputs()
    net(target, e)  # one training step's worth of BatchNorm statistics
    path = tmp_path / "G_0.pth"
    # as DataParallel training saves it, wrapped: exercises unwrapping and prefix stripping
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    loaded = AEINet.from_ghost_checkpoint(path)
    assert (loaded.backbone, loaded.num_aad_blocks, loaded.image_size, loaded.id_dim) == (backbone, 2, 64, 512)
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    net.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(target, e)[0], net(target, e)[0], rtol=0, atol=0)


@pytest.mark.slow
def test_from_ghost_checkpoint_round_trip_ghost_size(tmp_path, ghost_keys):
    state = {k: torch.randn(v) if v else torch.tensor(7) for k, v in ghost_keys["unet_1"].items()}
    torch.save(state, tmp_path / "G_unet_1.pth")
    loaded = AEINet.from_ghost_checkpoint(tmp_path / "G_unet_1.pth", backbone="unet")
    assert loaded.num_aad_blocks == 1
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


@pytest.fixture(scope="module")
def linknet_2_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ghost") / "G_linknet_2.pth"
    torch.save(AEINet("linknet", 2, **TINY).state_dict(), path)
    return path


@pytest.mark.parametrize("asked", [dict(backbone="unet"), dict(num_aad_blocks=3)])
def test_from_ghost_checkpoint_names_what_the_file_is(linknet_2_file, asked):
    with pytest.raises(CheckpointMismatchError) as info:
        AEINet.from_ghost_checkpoint(linknet_2_file, **asked)
    message = str(info.value)
    assert "'linknet' generator with 2 AAD block(s)" in message
    assert "backbone='linknet', num_aad_blocks=2" in message


def test_from_ghost_checkpoint_rejects_other_files(tmp_path):
    path = tmp_path / "D_0.pth"
    torch.save({"layer0.0.weight": torch.zeros(64, 3, 4, 4)}, path)
    expected = r"missing keys \(encoder\.conv1\.0\.weight.*unexpected keys \(layer0"
    with pytest.raises(CheckpointMismatchError, match=expected):
        AEINet.from_ghost_checkpoint(path)


# ---------------------------------------------------------------- clear errors


def test_unknown_encoder_name_lists_choices():
    with pytest.raises(UnknownNameError, match=r"'vgg'.*linknet, resnet, unet, timm:<model_name>"):
        create_attribute_encoder("vgg")
    with pytest.raises(UnknownNameError, match=r"timm.list_models"):
        create_attribute_encoder("timm:no_such_model_xyz", **TINY)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(image_size=100), r"image_size 100 .* 64, 128, 256, 512"),
        (dict(image_size=1024), r"valid sizes: 64, 128, 256, 512"),
        (dict(width=0), r"width 0 .*\(0, 4\]"),
        (dict(width=-0.5), r"width -0.5"),
        (dict(width="wide"), r"width 'wide'"),
        (dict(num_aad_blocks=0), r"num_aad_blocks 0 .* 1, 2 and 3"),
        (dict(id_dim=0), r"id_dim 0"),
    ],
)
def test_bad_options_list_valid_choices(kwargs, pattern):
    options = dict(backbone="unet", num_aad_blocks=1, image_size=64, width=0.125) | kwargs
    with pytest.raises(ModelOptionError, match=pattern):
        with torch.device("meta"):
            AEINet(**options)


def test_wrong_input_size_says_what_it_needs():
    net = AEINet("resnet", 1, **TINY)
    with pytest.raises(InputShapeError, match=r"\(N, 3, 64, 64\) but got \(2, 3, 128, 128\).*image_size=128"):
        net(torch.zeros(2, 3, 128, 128), torch.zeros(2, 512))


def test_timm_backbone_kwargs_load_local_pretrained_weights_and_stay_out_of_exports(tmp_path):
    import timm
    from conftest import save_training_checkpoint
    from safetensors.torch import save_file

    from faceswap_pl.errors import ModelOptionError
    from faceswap_pl.export import export_generator
    from faceswap_pl.inference.exported import load_exported_generator
    from faceswap_pl.inference.generators import read_training_checkpoint
    from faceswap_pl.training.module import FaceSwapModule

    torch.manual_seed(3)
    weights = tmp_path / "resnet18.safetensors"  # "pretrained" weights from a local file: no download
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet18").state_dict().items()}, str(weights))
    kwargs = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(weights)}, "drop_rate": 0.0}
    module = FaceSwapModule(backbone="timm:resnet18", backbone_kwargs=kwargs, num_aad_blocks=1, image_size=64,
                            width=0.125, d_ndf=8, d_layers=3, d_scales=2)
    loaded = module.generator.encoder.backbone.state_dict()
    from safetensors.torch import load_file

    file = load_file(str(weights))
    assert torch.equal(loaded["conv1.weight"], file["conv1.weight"])
    assert torch.equal(loaded["layer4.1.bn2.running_var"], file["layer4.1.bn2.running_var"])
    # checkpoint -> inference and export rebuild the architecture from its own weights, never the pretrained file
    checkpoint = save_training_checkpoint(module, tmp_path / "timm.ckpt")
    weights.unlink()
    assert read_training_checkpoint(checkpoint).generator.encoder.backbone is not None
    info = export_generator(checkpoint, tmp_path / "export", onnx=False)
    assert info["config"]["backbone_kwargs"] == {"drop_rate": 0.0}
    net = load_exported_generator(tmp_path / "export")
    assert torch.equal(net.encoder.backbone.conv1.weight, file["conv1.weight"])
    with pytest.raises(ModelOptionError, match="backbone_kwargs is for timm:<name> backbones"):
        FaceSwapModule(backbone="unet", backbone_kwargs={"pretrained": True}, image_size=64, width=0.125)
