"""GHOST's files and conventions outside the training step: fine-tuning from G/D files (and the one-sentence
errors for the wrong ones), swapping and evaluating with a GHOST G_*.pth, GHOST's five-template alignment,
batch files, the separately augmented identity view and the precomputed-embedding checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faceswap_pl.alignment import GHOST_TEMPLATES_112, alignment_matrix, ghost_alignment, transform_points
from faceswap_pl.cli import main
from faceswap_pl.data.tensor_batches import TensorBatchDataModule, TensorBatchError, read_batches
from faceswap_pl.errors import CheckpointMismatchError, FaceSwapError, ModelFileError, ModelOptionError
from faceswap_pl.inference.generators import GHOST_INFERENCE, SwapModel, read_training_checkpoint
from faceswap_pl.models.aei_net import AEINet
from faceswap_pl.models.discriminator import MultiscaleDiscriminator
from faceswap_pl.models.identity.arcface import iresnet
from faceswap_pl.models.importers.ghost import describe_state_dict
from faceswap_pl.training.module import FaceSwapModule

TINY = dict(backbone="unet", num_aad_blocks=2, image_size=64, width=0.125, d_ndf=16, d_layers=3, d_scales=2)


def _generator(blocks: int = 2, id_dim: int = 512, backbone: str = "unet") -> AEINet:
    return AEINet(backbone, blocks, image_size=64, width=0.125, id_dim=id_dim)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """GHOST-layout G (2 and 3 blocks), D and an ArcFace iresnet100 with random weights."""
    folder = tmp_path_factory.mktemp("ghost_files")
    torch.manual_seed(0)
    paths = {"G": folder / "G_unet_2blocks.pth", "G3": folder / "G_unet_3blocks.pth", "D": folder / "D.pth",
             "arcface": folder / "backbone.pth"}
    generator = _generator()
    with torch.no_grad():  # make the identity path audible (GHOST's init leaves it at N(0, 0.001))
        for name, p in generator.named_parameters():
            if ".fc" in name and name.endswith("weight"):
                p.normal_(0, 0.05)
    torch.save(generator.state_dict(), paths["G"])
    torch.save(_generator(3).state_dict(), paths["G3"])
    torch.save(MultiscaleDiscriminator(ndf=16, n_layers=3, num_scales=2).state_dict(), paths["D"])
    torch.save(iresnet("iresnet100").state_dict(), paths["arcface"])
    return paths


# ---------------------------------------------------------------- fine-tuning: model.init_generator / init_discriminator

def _arcface(files) -> dict:
    return {"identity_encoder": "arcface_iresnet100", "identity_weights": str(files["arcface"])}


def test_fine_tuning_starts_from_the_files(files):
    module = FaceSwapModule(**TINY, **_arcface(files), init_generator=str(files["G"]),
                            init_discriminator=str(files["D"]), ema_decay=0.999)
    module.on_fit_start()
    expected = torch.load(files["G"], weights_only=True)
    assert all(torch.equal(module.generator.state_dict()[k], v) for k, v in expected.items())
    assert all(torch.equal(module.generator_ema.state_dict()[k], v) for k, v in expected.items())
    d = torch.load(files["D"], weights_only=True)
    assert all(torch.equal(module.discriminator.state_dict()[k], v) for k, v in d.items())


def test_a_resumed_fit_keeps_its_own_weights(files):
    module = FaceSwapModule(**TINY, **_arcface(files), init_generator=str(files["G"]))
    module.iteration.fill_(7)  # as restored from last.ckpt before on_fit_start
    before = {k: v.clone() for k, v in module.generator.state_dict().items()}
    module.on_fit_start()
    assert all(torch.equal(module.generator.state_dict()[k], v) for k, v in before.items())


@pytest.mark.parametrize("slot, file, options, message", [
    ("init_generator", "D", {}, r"holds a multi-scale discriminator \(2 scales, ndf 16\), not a generator.*"
                                r"belongs in model.init_discriminator"),
    ("init_generator", "G3", {}, r"3 AAD block\(s\).*AAD blocks 3 \(the config builds 2\); set model.num_aad_blocks=3"),
    ("init_generator", "G", {"backbone": "linknet"}, r"backbone unet \(the config builds linknet\).*model.backbone=unet"),
    ("init_generator", "arcface", {}, r"holds an ArcFace iresnet identity network.*belongs in model.identity_weights"),
    ("init_discriminator", "G", {}, r"holds a GHOST-layout 'unet' generator.*not a discriminator.*"
                                    r"belongs in model.init_generator"),
    ("init_discriminator", "D", {"d_ndf": 64}, r"config builds 2 scale\(s\) with ndf 64; set model.d_scales=2 and "
                                               r"model.d_ndf=16"),
])
def test_wrong_files_are_named_in_one_sentence(files, slot, file, options, message):
    module = FaceSwapModule(**{**TINY, **options}, **_arcface(files), **{slot: str(files[file])})
    with pytest.raises(CheckpointMismatchError, match=message) as error:
        module.on_fit_start()
    assert "\n" not in str(error.value)


def test_identity_size_mismatch_names_the_encoder(files):
    module = FaceSwapModule(**TINY, identity_encoder="sface", init_generator=str(files["G"]))
    with pytest.raises(CheckpointMismatchError, match=r"identity size 512 \(the config builds 128\).*"
                                                      r"arcface_iresnet100 with model.identity_weights"):
        module.on_fit_start()


def test_a_training_checkpoint_is_a_starting_point_too(tmp_path):
    source = FaceSwapModule(**TINY)
    torch.save({"hyper_parameters": dict(source.hparams), "state_dict": source.state_dict()}, tmp_path / "a.ckpt")
    assert describe_state_dict(source.state_dict()) == "a faceswap-pl training checkpoint (generator and discriminator)"
    module = FaceSwapModule(**TINY, init_generator=str(tmp_path / "a.ckpt"), init_discriminator=str(tmp_path / "a.ckpt"))
    module.on_fit_start()
    assert all(torch.equal(module.generator.state_dict()[k], v) for k, v in source.generator.state_dict().items())
    assert all(torch.equal(module.discriminator.state_dict()[k], v)
               for k, v in source.discriminator.state_dict().items())


def test_missing_init_file_says_so(tmp_path):
    module = FaceSwapModule(**TINY, init_generator=str(tmp_path / "G_missing.pth"))
    with pytest.raises(FaceSwapError, match="G_missing.pth' does not exist"):
        module.on_fit_start()


# ---------------------------------------------------------------- GHOST's alignment

@pytest.mark.parametrize("index", range(5))
def test_ghost_alignment_finds_the_pose_template_and_its_matrix(index):
    # keypoints = template `index` at 224 px moved by a known similarity: the fit must undo exactly that similarity
    angle, scale, shift = 0.3, 1.7, np.array([40.0, -12.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    template = GHOST_TEMPLATES_112[index] * 2.0
    keypoints = template @ rotation.T + shift
    matrix, found = ghost_alignment(keypoints, 224)
    assert found == index
    np.testing.assert_allclose(transform_points(keypoints, matrix), template, atol=1e-9)
    np.testing.assert_allclose(alignment_matrix(keypoints, 224, "ghost"), matrix)
    # the single ArcFace template fits these points worse than the pose template does
    arcface_fit = transform_points(keypoints, alignment_matrix(keypoints, 224))
    assert np.abs(arcface_fit - template).max() > 1.0


# ---------------------------------------------------------------- swapping and evaluating with a GHOST G_*.pth

def test_ghost_generator_needs_its_arcface(files):
    with pytest.raises(ModelFileError, match="pass its backbone.pth.*--identity-weights"):
        SwapModel.load(files["G"])
    with pytest.raises(ModelFileError, match="holds a multi-scale discriminator.*not a generator"):
        SwapModel.load(files["D"], identity_weights=str(files["arcface"]))


def test_ghost_generator_runs_with_ghosts_inference_conventions(files):
    model = SwapModel.load(files["G"], identity_weights=str(files["arcface"]))
    assert model.conventions == GHOST_INFERENCE and model.crop_size == 224 and model.image_size == 64
    crop = torch.rand(2, 3, 224, 224) * 2 - 1
    net = iresnet("iresnet100")
    net.load_state_dict(torch.load(files["arcface"], weights_only=True))
    net.eval()
    with torch.no_grad():  # GHOST: netArc(F.interpolate(source_224, scale_factor=0.5, bilinear, align_corners=True))
        expected = net(F.interpolate(crop, scale_factor=0.5, mode="bilinear", align_corners=True))
    embedding = model.embed(crop)
    assert torch.equal(embedding, expected)  # raw: not normalised
    assert embedding.norm(dim=1).sub(1).abs().max() > 1e-3
    generator = AEINet.from_ghost_checkpoint(files["G"]).eval()
    with torch.no_grad():  # the crop resized to the generator's size, the output back to the crop's
        inner = generator(F.interpolate(crop, size=(64, 64), mode="bilinear", align_corners=False), embedding)[0]
        expected_swap = F.interpolate(inner, size=(224, 224), mode="bilinear", align_corners=False).clamp(-1, 1)
    assert torch.equal(model.swap(crop, embedding), expected_swap)


def test_swap_and_evaluate_accept_a_ghost_generator(files, media, demo_shards, tmp_path, capsys):
    from faceswap_pl.imageio import read_image

    out = tmp_path / "swapped.png"
    source, target = media("Tom_Hanks_54745.png"), media("single_face.jpg")
    argv = ["swap", "--source", str(source), "--target", str(target), "--model", str(files["G"]), "--out", str(out)]
    assert main(argv) == 2
    assert "--identity-weights" in capsys.readouterr().err
    assert main([*argv, "--identity-weights", str(files["arcface"])]) == 0
    printed = capsys.readouterr().out
    assert "GHOST's inference conventions" in printed and "on 224-px crops" in printed
    before, after = read_image(target), read_image(out)
    changed = np.any(before != after, axis=2)
    assert changed.any() and changed.mean() < 0.5  # the face, not the picture
    report = tmp_path / "evaluation"
    assert main(["evaluate", "--checkpoint", str(files["G"]), "--identity-weights", str(files["arcface"]),
                 "--pairs", str(demo_shards / "val"), "--num-pairs", "4", "--out", str(report)]) == 0
    assert (report / "report.json").is_file() and "GHOST generator" in (report / "report.json").read_text()


def test_checkpoints_from_before_the_conventions_keep_their_own(tmp_path):
    module = FaceSwapModule(**TINY)
    hparams = {k: v for k, v in module.hparams.items()
               if k not in ("normalize_identity", "identity_resize", "eye_reduction", "loss_denominators",
                            "d_skip_start")}
    torch.save({"hyper_parameters": hparams, "state_dict": module.state_dict()}, tmp_path / "old.ckpt")
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, tmp_path / "new.ckpt")
    old, new = read_training_checkpoint(tmp_path / "old.ckpt"), read_training_checkpoint(tmp_path / "new.ckpt")
    assert old.conventions.normalize_identity and old.conventions.identity_resize == "antialias"
    assert not new.conventions.normalize_identity and new.conventions.identity_resize == "bilinear"


# ---------------------------------------------------------------- batch files

def test_recorded_batches_replay_in_order(demo_shards, tmp_path):
    path = tmp_path / "batches.pt"
    assert main(["batches", "record", "--shards", str(demo_shards / "train"), "--out", str(path), "--count", "3",
                 "--batch-size", "2", "--image-size", "64", "--identity-size", "80"]) == 0
    batches = read_batches(path)
    assert len(batches) == 3
    assert batches[0]["identity_source"].shape == (2, 3, 80, 80) and batches[0]["target"].shape == (2, 3, 64, 64)
    # GHOST's two source views are the same frame jittered independently: related, never identical
    small = F.interpolate(batches[0]["identity_source"], size=(64, 64), mode="area")
    assert not torch.equal(small, batches[0]["source"])
    assert (small - batches[0]["source"]).abs().mean() < 0.3
    replay = [batch for batch in TensorBatchDataModule(str(path), image_size=64).train_dataloader()]
    assert all(torch.equal(a["target"], b["target"]) for a, b in zip(replay, batches))
    with pytest.raises(TensorBatchError, match="64 px but the model is 256 px"):
        TensorBatchDataModule(str(path), image_size=256).train_dataloader()


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ([(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8))], r"not a tuple \(Xs_orig, Xs, Xt, same_person\)"),
    ([(torch.zeros(2, 3, 8, 8), torch.full((2, 3, 8, 8), 255.0), torch.zeros(2, 3, 8, 8), torch.zeros(2))],
     r"Xs spans \[255, 255\], not \[-1, 1\]"),
    ([(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 4, 4), torch.zeros(2))],
     "Xs .* and Xt .* differ"),
    ([{"Xs": torch.zeros(2, 3, 8, 8)}], "lacks Xs_orig, Xt, same_person"),
    ("garbage", "Cannot read the batch file"),
])
def test_bad_batch_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "batches.pt"
    if isinstance(content, str):
        path.write_bytes(b"not a torch file")
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(TensorBatchError, match=message):
        read_batches(path)


# ---------------------------------------------------------------- identity inputs

def test_precomputed_embeddings_must_fit_the_encoder_and_the_vector_convention():
    module = FaceSwapModule(**TINY)  # sface, raw vectors
    module.check_precomputed_embeddings({"encoder": "sface", "vector": "raw"})
    with pytest.raises(ModelOptionError, match="come from 'facenet' but model.identity_encoder is 'sface'"):
        module.check_precomputed_embeddings({"encoder": "facenet", "vector": "raw"})
    with pytest.raises(ModelOptionError, match="unit vectors .* model.normalize_identity"):
        module.check_precomputed_embeddings({"encoder": "sface", "vector": "unit"})
    FaceSwapModule(**TINY, normalize_identity=True).check_precomputed_embeddings({"encoder": "sface", "vector": "unit"})


def test_the_generator_gets_raw_or_unit_identity_vectors():
    batch = {"source": torch.rand(2, 3, 64, 64) * 2 - 1}
    raw = FaceSwapModule(**TINY).source_embedding(batch)
    unit = FaceSwapModule(**TINY, normalize_identity=True).source_embedding(batch)
    torch.testing.assert_close(F.normalize(raw, dim=-1), unit)
    assert (raw.norm(dim=-1) - 1).abs().min() > 1e-2
    # the identity encoder sees the separately augmented view when the batch has one
    other = {**batch, "identity_source": torch.flip(batch["source"], dims=[-1])}
    assert not torch.equal(FaceSwapModule(**TINY).source_embedding(other), raw)
