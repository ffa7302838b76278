"""Every metric gives the same value from a 2-process gloo DDP run as from one process.

The data are synthetic features (embeddings, mesh / iris points, landmark sequences) built from a
fixed seed in each process. Rank 0 updates the first 5 of 8 samples in two calls and rank 1 the
last 3 in one (an uneven split); a second set of metrics with ``sync_on_compute=False`` gives the
rank-local values, which must differ from the synced ones (so the sync really happened).
"""

from __future__ import annotations

import datetime

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from faceswap_pl.metrics import (
    ExpressionError,
    EyeLandmarkError,
    IDRetrieval,
    PoseError,
    ShapeError,
    TemporalJitter,
)

SAMPLES = 8
#: rank -> the update calls it makes, as sample ranges
SHARES = {0: [(0, 2), (2, 5)], 1: [(5, 8)]}


def make_data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    mesh = lambda: 0.5 + 0.2 * torch.randn(SAMPLES, 468, 3, generator=g)  # noqa: E731
    return {
        "swap_emb": torch.randn(SAMPLES, 16, generator=g),
        "source_emb": torch.randn(SAMPLES, 16, generator=g),
        # identity 1 and 3 have gallery embeddings on both ranks
        "identity": torch.tensor([0, 1, 2, 3, 1, 3, 4, 1]),
        "swap_mesh": mesh(),
        "target_mesh": mesh(),
        "swap_iris": torch.rand(SAMPLES, 152, 2, generator=g),
        "target_iris": torch.rand(SAMPLES, 152, 2, generator=g),
        "swap_seq": torch.rand(SAMPLES, 6, 10, 2, generator=g),
        "target_seq": torch.rand(SAMPLES, 6, 10, 2, generator=g),
    }


def make_metrics(**kwargs) -> dict:
    return {
        "id": IDRetrieval(**kwargs),
        "expression": ExpressionError(**kwargs),
        "eye": EyeLandmarkError(**kwargs),
        "pose_deg": PoseError(**kwargs),
        "shape": ShapeError(**kwargs),
        "jitter": TemporalJitter(eye_indices=((0, 1, 2), (5, 6, 7)), **kwargs),
    }


def run_metrics(shares: list[tuple[int, int]], **kwargs) -> dict[str, torch.Tensor]:
    data, metrics = make_data(), make_metrics(**kwargs)
    for start, stop in shares:
        part = {key: value[start:stop] for key, value in data.items()}
        metrics["id"].update(part["swap_emb"], part["source_emb"], part["identity"])
        metrics["expression"].update(part["swap_mesh"], part["target_mesh"])
        metrics["eye"].update(part["swap_iris"], part["target_iris"])
        metrics["pose_deg"].update(part["swap_mesh"], part["target_mesh"])
        metrics["shape"].update(part["swap_mesh"], part["target_mesh"])
        for t in range(start, stop):  # one sequence per update
            metrics["jitter"].update(data["swap_seq"][t], data["target_seq"][t])
    values = {}
    for name, metric in metrics.items():
        out = metric.compute()
        values.update(out if isinstance(out, dict) else {name: out})
    return values


def worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=60))
    try:
        synced = run_metrics(SHARES[rank])
        local = run_metrics(SHARES[rank], sync_on_compute=False)
        torch.save({"synced": synced, "local": local}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(180)
def test_two_process_ddp_equals_one_process(tmp_path):
    single = run_metrics([(0, SAMPLES)])
    assert set(single) == {"id_top1", "id_top5", "id_cos", "expression", "eye", "pose_deg", "shape", "jitter",
                           "gallery_identities", "gallery_images", "id_top1_chance", "id_top5_chance"}
    assert all(torch.isfinite(v) for v in single.values())
    assert 0 < single["id_top1"] < 1  # a non-trivial retrieval

    mp.spawn(worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        for key, value in single.items():
            assert torch.allclose(result["synced"][key], value, rtol=1e-5, atol=1e-6), (rank, key)
    # the rank-local values differ from the global ones, so the synced equality is not trivial
    local = torch.load(tmp_path / "rank0.pt")["local"]
    assert all(not torch.allclose(local[key], single[key]) for key in ("id_cos", "expression", "eye", "pose_deg",
                                                                       "shape", "jitter"))
