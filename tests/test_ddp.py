"""Two-process CPU data-parallel training of the tiny config: strategy ``gan_ddp`` against the alternatives.

Each run is ``python -m faceswap_pl.cli fit --config experiments/tiny_cpu.yaml`` in a subprocess (Lightning's
DDP launcher re-runs that command for rank 1) with the :class:`ReplicaCheck` callback writing the per-rank
checksums of the generator and discriminator to JSON. The three runs take about 2 minutes together on
2 CPU cores, so they are marked ``slow`` (`pytest -m slow tests/test_ddp.py`).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from faceswap_pl.callbacks.replica_check import batch_fingerprint, network_checksums, replica_mismatches, same_batches

REPO = Path(__file__).resolve().parents[1]
ITERATIONS = 3
TIMEOUT_S = 600
# variables of an enclosing distributed launch would make Lightning join it instead of starting its own
LAUNCH_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK",
                    "LOCAL_WORLD_SIZE", "PL_GLOBAL_SEED", "SLURM_NTASKS", "SLURM_JOB_NAME")


def fit_two_processes(workdir: Path, strategy: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Train the tiny config for ``ITERATIONS`` iterations on 2 CPU processes; returns (process, report or None)."""
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / "replicas.json"
    command = [
        sys.executable, "-m", "faceswap_pl.cli", "fit", "--config", str(REPO / "experiments" / "tiny_cpu.yaml"),
        "--trainer.accelerator=cpu", "--trainer.devices=2", f"--trainer.strategy={strategy}",
        "--trainer.enable_checkpointing=false", "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false",
        f"--model.max_iterations={ITERATIONS}", "--data.init_args.train_pairs=16", "--data.init_args.batch_size=2",
        "--trainer.callbacks+=faceswap_pl.callbacks.replica_check.ReplicaCheck", f"--trainer.callbacks.path={report}",
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    env["OMP_NUM_THREADS"] = "1"
    start = time.perf_counter()
    # own session: on a timeout the whole group (rank 1 included) is killed, not just rank 0
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{strategy}: no result after {TIMEOUT_S} s\n--- stderr ---\n{stderr[-6000:]}")
    print(f"{strategy}: {time.perf_counter() - start:.1f} s, exit code {process.returncode}")
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    return result, json.loads(report.read_text()) if report.exists() else None


def assert_succeeded(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"exit code {result.returncode}\n--- stderr ---\n{result.stderr[-6000:]}"


@pytest.fixture(scope="module")
def gan_ddp_run(tmp_path_factory):
    return fit_two_processes(tmp_path_factory.mktemp("gan_ddp"), "gan_ddp")


@pytest.mark.slow  # ~40 s per 2-process run on 2 busy CPU cores
@pytest.mark.ci
def test_gan_ddp_trains_with_identical_replicas(gan_ddp_run):
    result, report = gan_ddp_run
    assert_succeeded(result)
    assert "unused" not in result.stderr.lower()
    assert report is not None
    assert (report["world_size"], report["strategy"], report["iteration"]) == (2, "gan_ddp", ITERATIONS)
    batches = report["batches"]  # every rank trained on its own data, batch after batch
    assert len(batches["0"]) == len(batches["1"]) == ITERATIONS
    assert all(a != b for a, b in zip(batches["0"], batches["1"])), batches
    assert "trained on exactly the batches of rank 0" not in result.stderr
    ranks = report["checksums"]
    for network in ("generator", "discriminator"):
        assert ranks["0"][network]["parameters"] == ranks["1"][network]["parameters"], network
        assert ranks["0"][network]["parameters"]["numel"] > 0


@pytest.mark.slow  # ~40 s per 2-process run on 2 busy CPU cores
@pytest.mark.ci
def test_find_unused_parameters_gives_the_same_weights(gan_ddp_run, tmp_path):
    """Same data, seed and reductions: the weights must be bit-identical to gan_ddp's on every rank.

    Buffers are compared on rank 0 only. Both strategies leave rank 0 with its own BatchNorm
    statistics, but they sync the other ranks' buffers differently: gan_ddp's wrapper broadcasts the
    generator's buffers from rank 0 at every generator forward, while Lightning's manual-optimisation
    path for a whole-module DDP disables ``require_forward_param_sync`` after each ``training_step``,
    so rank 1's running statistics are broadcast only at the first iteration.
    """
    _, gan_report = gan_ddp_run
    result, report = fit_two_processes(tmp_path, "ddp_find_unused_parameters_true")
    assert_succeeded(result)
    assert gan_report is not None and report is not None
    assert report["iteration"] == ITERATIONS
    assert report["batches"] == gan_report["batches"]  # the same data on each rank as gan_ddp's run
    assert report["batches"]["0"] != report["batches"]["1"]
    for rank in ("0", "1"):
        for network in ("generator", "discriminator"):
            ours, theirs = gan_report["checksums"][rank][network], report["checksums"][rank][network]
            assert ours["parameters"] == theirs["parameters"], (rank, network)
    assert report["checksums"]["0"] == gan_report["checksums"]["0"]


@pytest.mark.slow  # ~40 s per 2-process run on 2 busy CPU cores
def test_plain_ddp_fails_on_the_discriminator_step(tmp_path):
    """One DDP wrapper around the whole module: the D step leaves every generator parameter without a gradient."""
    result, report = fit_two_processes(tmp_path, "ddp")
    assert result.returncode != 0, "plain 'ddp' trained a GAN; strategy 'gan_ddp' would be unnecessary"
    assert "parameters that were not used in producing the loss" in result.stderr, result.stderr[-6000:]
    assert report is None


def test_replica_mismatch_names_network_kind_and_ranks():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    same = {"generator": network_checksums(net)}
    assert network_checksums(net) == same["generator"]
    net[1].running_mean[0] += 1
    buffers_differ = {"generator": network_checksums(net)}
    with torch.no_grad():
        net[0].weight[0, 0] = torch.nextafter(net[0].weight[0, 0], torch.tensor(1.0))  # one ulp
    both_differ = {"generator": network_checksums(net)}

    gathered = [same, same, buffers_differ, both_differ]
    assert replica_mismatches(gathered, ["generator"]) == ["generator parameters on rank(s) [3] differ from rank 0"]
    assert replica_mismatches(gathered, ["generator"], check_buffers=True) == [
        "generator parameters on rank(s) [3] differ from rank 0",
        "generator buffers on rank(s) [2, 3] differ from rank 0",
    ]
    assert replica_mismatches([same, same], ["generator"], check_buffers=True) == []


def test_batch_fingerprints_tell_ranks_with_the_same_data():
    a = {"source": torch.zeros(2, 3), "same_identity": torch.tensor([True, False]), "name": "x"}
    b = {"source": torch.zeros(2, 3), "same_identity": torch.tensor([True, True])}
    assert batch_fingerprint(a) == batch_fingerprint(dict(reversed(list(a.items()))))
    assert batch_fingerprint(a) != batch_fingerprint(b)
    assert batch_fingerprint([torch.ones(1)]) != batch_fingerprint([torch.zeros(1)])
    fa, fb = batch_fingerprint(a), batch_fingerprint(b)
    assert same_batches([[fa, fb], [fb, fa], [fa, fb]]) == [2]
    assert same_batches([[fa], [fb]]) == [] and same_batches([[fa]]) == []


@pytest.mark.slow
@pytest.mark.ci
def test_two_nodes_launched_with_torchrun(tmp_path, demo_shards):
    """Two "nodes" on this machine, each `torchrun --nnodes=2 --nproc-per-node=1` with c10d rendezvous on loopback
    (gloo, gan_ddp), train on the demo shards: each rank reads its own shards, sees its own batches, and the
    replicas end bit-identical. The command line is the one docs/training.md gives for several nodes."""
    import socket

    from faceswap_pl.data.reader import resolve_shards, shard_order

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    env["OMP_NUM_THREADS"] = "1"
    report = tmp_path / "replicas.json"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=two-nodes", "-m", "faceswap_pl.cli", "fit",
        "--config", str(REPO / "experiments" / "tiny_cpu.yaml"), "--config", str(REPO / "experiments" / "data" / "shards.yaml"),
        f"--data.init_args.train={demo_shards / 'train'}", "--data.init_args.val=null",
        "--data.init_args.batch_size=2", "--data.init_args.epoch_pairs=8", "--data.init_args.num_workers=0",
        "--data.init_args.identity_view=null", "--data.init_args.eval_pairs=4",
        "--trainer.accelerator=cpu", "--trainer.num_nodes=2", "--trainer.devices=1", "--trainer.strategy=gan_ddp",
        "--trainer.enable_checkpointing=false", "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
        f"--model.max_iterations={ITERATIONS}", "--model.width=0.0625",
        "--trainer.callbacks+=faceswap_pl.callbacks.replica_check.ReplicaCheck", f"--trainer.callbacks.path={report}",
    ]
    nodes = []
    for node in range(2):
        folder = tmp_path / f"node{node}"
        folder.mkdir()
        log = open(folder / "log.txt", "w")
        nodes.append((subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True), log, folder))
    try:
        for process, log, folder in nodes:
            process.wait(timeout=TIMEOUT_S)
    finally:
        for process, log, folder in nodes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            log.close()
    logs = "\n".join((folder / "log.txt").read_text()[-3000:] for _, _, folder in nodes)
    assert all(process.returncode == 0 for process, _, _ in nodes), logs
    data = json.loads(report.read_text())
    assert (data["world_size"], data["strategy"], data["iteration"]) == (2, "gan_ddp", ITERATIONS)
    assert all(a != b for a, b in zip(data["batches"]["0"], data["batches"]["1"])) and len(data["batches"]["0"]) == ITERATIONS
    for network in ("generator", "discriminator"):
        assert data["checksums"]["0"][network]["parameters"] == data["checksums"]["1"][network]["parameters"]
    shards = resolve_shards(str(demo_shards / "train"))
    firsts = [list(itertools.islice(shard_order(shards, seed=0, rank=r, world_size=2), len(shards) // 2))
              for r in range(2)]
    assert len(shards) >= 2 and not set(firsts[0]) & set(firsts[1])  # disjoint shards per rank within a round
