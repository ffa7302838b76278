"""GHOST parity: FaceSwapModule trains step for step as GHOST's train.py on the same weights and batches.

From fixed G / D / ArcFace / AWing weight files and a fixed file of GHOST-layout batches (batch 2, one
same-person row), ``FaceSwapModule`` (through Lightning, with its memory options) and
:class:`~faceswap_pl.ghost_reference.GhostReferenceLoop` (GHOST's formulas in plain PyTorch: torch Adam,
one backward per phase) run 3 iterations in fp32. The module computes every loss in GHOST's order of
operations, so the loss terms and every weight of G and D after every iteration are not just within
1e-5 / 1e-6 but bit for bit equal. ``split_backward`` adds the same gradients up in another order; it is
checked in float64, where rounding cannot reach 1e-6.

The tiny configuration (64 px, width 1/8, iresnet50, small D) runs by default; GHOST's own size (unet,
2 AAD blocks, 256 px, iresnet100, GHOST's D) is the slow test, and the `fit` command of the README runs
in a CLI test.
"""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch

from faceswap_pl.data.tensor_batches import TensorBatchDataModule, read_batches
from faceswap_pl.ghost_reference import GhostReferenceLoop, GhostWeights
from faceswap_pl.models.aei_net import AEINet
from faceswap_pl.models.discriminator import MultiscaleDiscriminator
from faceswap_pl.models.identity.arcface import iresnet
from faceswap_pl.models.landmarks.awing import FAN
from faceswap_pl.training.module import FaceSwapModule

TERMS = ("adv", "id", "att", "rec", "eye", "loss_g", "loss_d")
TINY = dict(backbone="unet", num_aad_blocks=2, image_size=64, width=0.125, d_ndf=16, d_layers=3, d_scales=2)
GHOST_SIZE = dict(backbone="unet", num_aad_blocks=2, image_size=256, width=1.0, d_ndf=64, d_layers=5, d_scales=3)
ITERATIONS = 3


def make_weights(folder, config: dict, arcface: str, seed: int = 0) -> dict:
    """Random G, D, ArcFace and AWing files in their released layouts (ArcFace features scaled to GHOST's norms)."""
    torch.manual_seed(seed)
    G = AEINet(config["backbone"], config["num_aad_blocks"], image_size=config["image_size"], width=config["width"],
               id_dim=512)
    with torch.no_grad():  # GHOST's N(0, 0.001) identity layers leave the identity path nearly silent; wake it
        for name, p in G.named_parameters():
            if ".fc" in name and name.endswith("weight"):
                p.normal_(0, 0.02)
    D = MultiscaleDiscriminator(ndf=config["d_ndf"], n_layers=config["d_layers"], num_scales=config["d_scales"])
    net = iresnet(arcface).eval()
    with torch.no_grad():
        net.features.weight.mul_(25.0)  # raw ArcFace features have norms of ~20-30, far from 1
    fan = FAN().eval()
    paths = {name: folder / f"{name}.pth" for name in ("G", "D", "arcface", "fan")}
    for name, module in (("G", G), ("D", D), ("arcface", net), ("fan", fan)):
        torch.save(module.state_dict(), paths[name])
    return paths


def make_batches(path, image_size: int, identity_size: int, seed: int = 1) -> None:
    """ITERATIONS batches of 2 in GHOST's layout; row 0 is a same-person pair (target = source, as GHOST)."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(ITERATIONS):
        Xs = torch.rand(2, 3, image_size, image_size, generator=g) * 2 - 1
        Xt = torch.rand(2, 3, image_size, image_size, generator=g) * 2 - 1
        Xt[0] = Xs[0]
        Xs_orig = torch.nn.functional.interpolate(Xs, size=(identity_size, identity_size), mode="bilinear",
                                                  align_corners=False)
        batches.append((Xs_orig, Xs, Xt, torch.tensor([1, 0])))
    torch.save(batches, path)


class Recorder(L.Callback):
    """Logged loss terms and G / D weights after every iteration."""

    def __init__(self) -> None:
        self.terms, self.weights = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        metrics = trainer.callback_metrics
        self.terms.append({name: float(metrics[f"train/{name}"]) for name in TERMS if f"train/{name}" in metrics}
                          | {"d_skipped": float(metrics["train/d_skipped"])})
        self.weights.append({"G": copy.deepcopy(pl_module.generator.state_dict()),
                             "D": copy.deepcopy(pl_module.discriminator.state_dict())})


def run_module(tmp_path, files: dict, batches, config: dict, arcface: str, w_eye: float, precision="32-true",
               **options):
    module = FaceSwapModule(**config, identity_encoder=f"arcface_{arcface}", identity_weights=str(files["arcface"]),
                            eye_model="awing_fan", eye_weights=str(files["fan"]), w_eye=w_eye,
                            init_generator=str(files["G"]), init_discriminator=str(files["D"]),
                            max_iterations=ITERATIONS, **options)
    recorder = Recorder()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[recorder], default_root_dir=tmp_path)
    trainer.fit(module, TensorBatchDataModule(str(batches), image_size=config["image_size"]))
    assert int(module.iteration) == ITERATIONS
    return module, recorder


def run_reference(files: dict, batches, config: dict, arcface: str, w_eye: float,
                  d_skip_threshold: float | None = None, dtype=torch.float32, fused: bool = False):
    """Loss terms and G / D weights after every iteration, and the loop (its optimizers) at the end."""
    G = AEINet(config["backbone"], config["num_aad_blocks"], image_size=config["image_size"], width=config["width"],
               id_dim=512)
    G.load_state_dict(torch.load(files["G"], weights_only=True))
    D = MultiscaleDiscriminator(ndf=config["d_ndf"], n_layers=config["d_layers"], num_scales=config["d_scales"])
    D.load_state_dict(torch.load(files["D"], weights_only=True))
    net = iresnet(arcface)
    net.load_state_dict(torch.load(files["arcface"], weights_only=True))
    fan = FAN()
    fan.load_state_dict(torch.load(files["fan"], weights_only=True))
    net.requires_grad_(False)
    fan.requires_grad_(False)
    for network in (G, D, net, fan):
        network.to(dtype)
    loop = GhostReferenceLoop(G, D, net, fan if w_eye else None, GhostWeights(eyes=w_eye),
                              d_skip_threshold=d_skip_threshold, fused=fused)
    terms, weights = [], []
    for Xs_orig, Xs, Xt, same in torch.load(batches, weights_only=True):
        terms.append(loop.step(Xs_orig.to(dtype), Xs.to(dtype), Xt.to(dtype), same))
        weights.append({"G": copy.deepcopy(G.state_dict()), "D": copy.deepcopy(D.state_dict())})
    return terms, weights, loop


def assert_parity(module_run, reference_run, exact: bool = True, atol: float = 1e-6) -> None:
    """Loss terms to 1e-5 relative and weights to ``atol`` after every iteration; with ``exact``, bit for bit."""
    (terms, weights), (ref_terms, ref_weights) = module_run, reference_run[:2]
    for it in range(ITERATIONS):
        for name in TERMS:
            if name in terms[it]:
                assert terms[it][name] == pytest.approx(ref_terms[it][name], rel=1e-5, abs=1e-7), (it, name)
                if exact:
                    assert terms[it][name] == ref_terms[it][name], (it, name)
        assert terms[it]["d_skipped"] == float(not ref_terms[it]["d_stepped"]), it
        for net in ("G", "D"):
            assert ref_weights[it][net].keys() == weights[it][net].keys()
            worst = max((weights[it][net][k].double() - v.double()).abs().max().item()
                        for k, v in ref_weights[it][net].items() if v.is_floating_point())
            assert worst <= (0.0 if exact else atol), f"iteration {it}: {net} differs by {worst:.3g}"
            for k, v in ref_weights[it][net].items():
                if not v.is_floating_point():  # BatchNorm counters: updated on X_t and on Y every iteration
                    assert torch.equal(weights[it][net][k], v), (it, net, k)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ghost_tiny")
    files = make_weights(folder, TINY, "iresnet50")
    make_batches(folder / "batches.pt", image_size=64, identity_size=160)  # shrunk to 112 for ArcFace
    files["batches"] = folder / "batches.pt"
    return files


@pytest.fixture(scope="module")
def tiny_reference_with_eyes(tiny_files):
    return run_reference(tiny_files, tiny_files["batches"], TINY, "iresnet50", w_eye=800.0)


@pytest.fixture(scope="module")
def tiny_reference(tiny_files):
    return run_reference(tiny_files, tiny_files["batches"], TINY, "iresnet50", w_eye=0.0)


def test_module_equals_ghosts_formulas_with_the_awing_eye_loss(tmp_path, tiny_files, tiny_reference_with_eyes):
    module, recorder = run_module(tmp_path, tiny_files, tiny_files["batches"], TINY, "iresnet50", w_eye=800.0)
    assert module.hparams.step_in_backward and module.hparams.recompute_levels > 0  # the default memory options ran
    assert all(t["eye"] > 0 for t in recorder.terms) and all(t["rec"] > 0 for t in recorder.terms)
    assert_parity((recorder.terms, recorder.weights), tiny_reference_with_eyes)


def assert_same_optimizer_states(module: FaceSwapModule, loop: GhostReferenceLoop) -> None:
    """Both Adams' step counts and second moments equal, parameter by parameter. (The module's lean Adam keeps no
    first moment: with GHOST's beta1 = 0 it is the last gradient, which torch Adam stores and the lean one drops.)"""
    opt_g, opt_d = (getattr(o, "optimizer", o) for o in module.optimizers())
    for name, ours, theirs, params, ref_params in (
            ("G", opt_g, loop.opt_G, module.generator.parameters(), loop.G.parameters()),
            ("D", opt_d, loop.opt_D, module.discriminator.parameters(), loop.D.parameters())):
        for i, (p, q) in enumerate(zip(params, ref_params, strict=True)):
            mine, ref = ours.state[p], theirs.state[q]
            assert "exp_avg" not in mine and "exp_avg" in ref, (name, i)  # the lean path ran
            assert float(mine["step"]) == float(ref["step"]) == ITERATIONS, (name, i)
            assert torch.equal(mine["exp_avg_sq"], ref["exp_avg_sq"]), (name, i)


class PathSpy:
    """Counts the calls that show which code path trained: per-parameter steps inside the backward, recomputed
    AAD layers, and fused Adam kernels."""

    def __init__(self, monkeypatch) -> None:
        import torch.optim.adam as adam

        import faceswap_pl.models.aad as aad
        from faceswap_pl.training.optim import LeanAdam

        self.calls = {"step_parameter": 0, "checkpoint": 0, "fused": 0}
        for owner, name, key in ((LeanAdam, "step_parameter", "step_parameter"), (aad, "checkpoint", "checkpoint"),
                                 (adam, "_fused_adam", "fused")):
            monkeypatch.setattr(owner, name, self._counting(getattr(owner, name), key))

    def _counting(self, function, key):
        def counted(*args, **kwargs):
            self.calls[key] += 1
            return function(*args, **kwargs)
        return counted


@pytest.fixture(scope="module")
def tiny_reference_fused(tiny_files):
    return run_reference(tiny_files, tiny_files["batches"], TINY, "iresnet50", w_eye=0.0, fused=True)


MEMORY_OPTIONS = [dict(step_in_backward=step, recompute_levels=levels, fused_adam=fused)
                  for step in (False, True) for levels in (0, 3) for fused in (False, True)]


@pytest.mark.parametrize("options", MEMORY_OPTIONS, ids=lambda o: "-".join(
    [k for k in ("step_in_backward", "fused_adam") if o[k]] + (["recompute"] if o["recompute_levels"] else [])
    or ["plain"]))
def test_memory_options_keep_parity(tmp_path, tiny_files, tiny_reference, tiny_reference_fused, options,
                                    monkeypatch):
    # against the plain loop: torch Adam (fused for fused_adam), one backward per phase, no memory options
    spy = PathSpy(monkeypatch)
    reference = tiny_reference_fused if options["fused_adam"] else tiny_reference
    module, recorder = run_module(tmp_path, tiny_files, tiny_files["batches"], TINY, "iresnet50", w_eye=0.0, **options)
    assert spy.calls["fused"] > 0 if options["fused_adam"] else spy.calls["fused"] == 0
    assert_parity((recorder.terms, recorder.weights), reference)
    assert_same_optimizer_states(module, reference[2])
    # each option's own code ran (and only then): G's parameters stepped one by one inside the backward,
    # the AAD layers of the top blocks recomputed, fused kernels for both optimizers
    parameters = sum(1 for p in module.generator.parameters() if p.requires_grad)
    assert spy.calls["step_parameter"] == (ITERATIONS * parameters if options["step_in_backward"] else 0)
    assert (spy.calls["checkpoint"] > 0) == (options["recompute_levels"] > 0)
    g_kernels = parameters if options["step_in_backward"] else 1  # one per parameter, or one for all of them
    assert spy.calls["fused"] == (ITERATIONS * (g_kernels + 1) if options["fused_adam"] else 0)


@pytest.mark.parametrize("option", ["split_backward", "fused_adam"])
def test_reordering_options_keep_parity_in_float64(tmp_path, tiny_files, option):
    # against the single-tensor torch Adam: the same numbers added up in another order, exact in the maths,
    # so within 1e-6 in float64
    reference = run_reference(tiny_files, tiny_files["batches"], TINY, "iresnet50", w_eye=0.0, dtype=torch.float64)
    _, recorder = run_module(tmp_path, tiny_files, tiny_files["batches"], TINY, "iresnet50", w_eye=0.0,
                             precision="64-true", **{option: True})
    assert_parity((recorder.terms, recorder.weights), reference, exact=False, atol=1e-6)


class CheckpointCount:
    """Counts the networks run through :func:`faceswap_pl.models.recompute.recomputed`'s checkpoint."""

    def __init__(self, monkeypatch, keep_statistics: bool = True) -> None:
        import contextlib

        import faceswap_pl.models.recompute as recompute

        self.calls = 0
        original = recompute.checkpoint

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(recompute, "checkpoint", counted)
        if not keep_statistics:
            monkeypatch.setattr(recompute, "_statistics_kept", lambda layers: contextlib.nullcontext())


def test_recomputed_networks_keep_parity(tmp_path, tiny_files, tiny_reference_with_eyes, monkeypatch):
    # the attribute encoder (on X_t and on Y), ArcFace, the eye network and D on the swap all recomputed in the
    # backward pass: every loss, weight and BatchNorm statistic bit for bit GHOST's
    count = CheckpointCount(monkeypatch)
    _, recorder = run_module(tmp_path, tiny_files, tiny_files["batches"], TINY, "iresnet50", w_eye=800.0,
                             recompute_networks=["encoder", "identity", "eye", "discriminator"])
    assert count.calls == ITERATIONS * 5
    assert_parity((recorder.terms, recorder.weights), tiny_reference_with_eyes)


def test_recomputed_encoder_needs_its_batchnorm_statistics_put_back(tmp_path, tiny_files, tiny_reference,
                                                                     monkeypatch):
    # rerun in training mode, the encoder's BatchNorm layers would count every batch twice
    CheckpointCount(monkeypatch, keep_statistics=False)
    _, recorder = run_module(tmp_path, tiny_files, tiny_files["batches"], TINY, "iresnet50", w_eye=0.0,
                             recompute_networks=["encoder"])
    with pytest.raises(AssertionError, match="G differs|num_batches_tracked"):
        assert_parity((recorder.terms, recorder.weights), tiny_reference)


def test_discriminator_skip_rule_starts_at_20(tmp_path, tiny_files):
    # GHOST's running mean of L_adv starts at 20, so with discr_force D waits ~80 iterations for it to fall below 4
    reference = run_reference(tiny_files, tiny_files["batches"], TINY, "iresnet50", w_eye=0.0, d_skip_threshold=4.0)
    assert not any(t["d_stepped"] for t in reference[0])
    _, recorder = run_module(tmp_path, tiny_files, tiny_files["batches"], TINY, "iresnet50", w_eye=0.0,
                             d_skip_threshold=4.0)
    assert all(t["d_skipped"] == 1.0 for t in recorder.terms)
    assert_parity((recorder.terms, recorder.weights), reference)
    initial = torch.load(tiny_files["D"], weights_only=True)
    assert all(torch.equal(recorder.weights[-1]["D"][k], v) for k, v in initial.items())


def test_each_ghost_convention_is_needed_for_parity(tmp_path, tiny_files, tiny_reference):
    """With any one convention switched to its other choice, the module no longer matches GHOST."""
    skipping = run_reference(tiny_files, tiny_files["batches"], TINY, "iresnet50", w_eye=0.0, d_skip_threshold=4.0)
    for option, reference in ((dict(normalize_identity=True), tiny_reference),
                              (dict(identity_resize="antialias"), tiny_reference),
                              (dict(loss_denominators="mean"), tiny_reference),
                              (dict(d_skip_start=0.0, d_skip_threshold=4.0), skipping)):
        _, recorder = run_module(tmp_path, tiny_files, tiny_files["batches"], TINY, "iresnet50", w_eye=0.0, **option)
        with pytest.raises(AssertionError):
            assert_parity((recorder.terms, recorder.weights), reference)


def test_fit_with_ghost_yaml_trains_step_for_step(tmp_path, monkeypatch, tiny_files, tiny_reference):
    """The README's command: ghost.yaml + the batch file + GHOST G / D / ArcFace files, fp32 (at the tiny size);
    the configs named as shipped (``ghost``, ``data/ghost_batches``), from a folder that is not the checkout."""
    from faceswap_pl.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", "ghost", "--config", "data/ghost_batches",
                 f"--data.init_args.path={tiny_files['batches']}",
                 "--model.image_size=64", "--model.width=0.125", "--model.d_ndf=16", "--model.d_layers=3",
                 "--model.d_scales=2", "--model.identity_encoder=arcface_iresnet50",
                 f"--model.identity_weights={tiny_files['arcface']}", f"--model.init_generator={tiny_files['G']}",
                 f"--model.init_discriminator={tiny_files['D']}", "--trainer.precision=32",
                 f"--model.max_iterations={ITERATIONS}", "--trainer.accelerator=cpu", "--trainer.devices=1",
                 "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]) == 0
    (last,) = tmp_path.glob("outputs/*/*/checkpoints/last.ckpt")
    state = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    assert int(state["iteration"]) == ITERATIONS
    for net, prefix in (("G", "generator."), ("D", "discriminator.")):
        final = tiny_reference[1][-1][net]
        assert all(torch.equal(state[prefix + k], v) for k, v in final.items()), net


def test_batch_file_round_trips_into_the_module_layout(tiny_files):
    batches = read_batches(tiny_files["batches"])
    assert len(batches) == ITERATIONS
    first = batches[0]
    assert first["identity_source"].shape == (2, 3, 160, 160) and first["source"].shape == (2, 3, 64, 64)
    assert first["same_identity"].tolist() == [True, False]
    assert torch.equal(first["target"][0], first["source"][0])


@pytest.mark.slow
@pytest.mark.ci
def test_module_equals_ghosts_formulas_at_ghost_size(tmp_path):
    files = make_weights(tmp_path, GHOST_SIZE, "iresnet100")
    make_batches(tmp_path / "batches.pt", image_size=256, identity_size=224)
    reference = run_reference(files, tmp_path / "batches.pt", GHOST_SIZE, "iresnet100", w_eye=800.0)
    _, recorder = run_module(tmp_path, files, tmp_path / "batches.pt", GHOST_SIZE, "iresnet100", w_eye=800.0)
    assert_parity((recorder.terms, recorder.weights), reference)
