"""Two-process DDP (gloo, CPU): every rank takes the same number of batches per epoch and ranks see different data."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
from test_data import write_dataset  # noqa: E402

from faceswap_pl.data.datamodule import FaceSwapDataModule  # noqa: E402

WORLD = 2
EPOCHS = 2


def _rank(rank: int, folder: str, rendezvous: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=30))
    torch.set_num_threads(1)
    dm = FaceSwapDataModule(train=folder, image_size=32, batch_size=4, num_workers=2, epoch_pairs=40, buffer=8)
    loader = dm.train_dataloader()
    epochs = []
    for _ in range(EPOCHS):
        batches, sources = 0, []
        for batch in loader:
            step = torch.ones(1)
            dist.all_reduce(step)  # a DDP step's collective: a rank with fewer batches would hang here
            batches += 1
            sources.append(batch["source"].sum().item())
        epochs.append({"batches": batches, "sources": sources})
    gathered = [None] * WORLD
    dist.all_gather_object(gathered, {"rank": rank, "len": len(loader), "epochs": epochs})
    if rank == 0:
        Path(out).write_text(json.dumps(gathered))
    loader.shutdown()
    dist.destroy_process_group()


def test_ddp_ranks_take_equal_steps_on_different_data(tmp_path):
    folder = tmp_path / "train"
    write_dataset(folder, identities=10, groups=2, frames=3, shards=5, size=32, uneven=True)  # 5 shards, unequal
    out = tmp_path / "result.json"
    # fork: the ranks inherit the imported modules (spawning would re-import torch and Lightning per rank)
    mp.start_processes(_rank, args=(str(folder), str(tmp_path / "rendezvous"), str(out)), nprocs=WORLD, join=True,
                       start_method="fork")
    ranks = json.loads(out.read_text())
    for result in ranks:
        assert result["len"] == 5  # ceil(40 pairs / (4 per batch x 2 ranks))
        assert [e["batches"] for e in result["epochs"]] == [5] * EPOCHS
    assert ranks[0]["epochs"][0]["sources"] != ranks[1]["epochs"][0]["sources"]  # ranks see different data
    assert ranks[0]["epochs"][0]["sources"] != ranks[0]["epochs"][1]["sources"]  # and new data each epoch


def test_lightning_ddp_fork_gives_each_rank_the_same_steps(tmp_path):
    import lightning as L
    from test_data import counting_module_class

    folder = tmp_path / "train"
    write_dataset(folder, identities=10, groups=2, frames=3, shards=3, size=32, uneven=True)  # resampled: 3 < 2x2

    class Recording(counting_module_class()):
        def on_train_end(self):
            record = {"epochs": self.seen, "sources": self.sources}
            (tmp_path / f"rank{self.global_rank}.json").write_text(json.dumps(record))

    dm = FaceSwapDataModule(train=str(folder), image_size=32, batch_size=2, num_workers=2, epoch_pairs=12, buffer=8)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=WORLD, strategy="ddp_fork", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.fit(Recording(), datamodule=dm)
    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    for record in records:
        assert record["epochs"] == [0] * 3 + [1] * 3  # ceil(12 / (2 x 2)) = 3 steps per epoch on each rank
    assert records[0]["sources"] != records[1]["sources"]
