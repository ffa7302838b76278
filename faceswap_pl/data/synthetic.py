"""A synthetic pair dataset for smoke tests and benchmarks: no files, deterministic, any size.

Each "identity" is a fixed random low-frequency colour pattern; its "frames" are that pattern with
a small random shift and brightness change. Pairs follow the training schema
(``source``, ``target``, ``same_identity``) with probability ``p_same`` of a same-identity pair.
It measures the training loop, not face swapping: real training uses shards. Its fixed evaluation pairs
(:meth:`SyntheticPairDataModule.eval_pairs`) let the evaluation callback run on it in smoke tests; the
face networks' numbers on colour patterns mean nothing.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from faceswap_pl.data.evalpairs import EvalPairs


class SyntheticPairs(Dataset):
    """``length`` deterministic pairs of (3, S, S) images in [-1, 1] drawn from ``identities`` patterns."""

    def __init__(self, image_size: int = 64, length: int = 64, identities: int = 8, p_same: float = 0.2,
                 seed: int = 0) -> None:
        self.image_size, self.length, self.p_same, self.seed = image_size, length, p_same, seed
        g = torch.Generator().manual_seed(seed)
        coarse = torch.rand(identities, 3, 6, 6, generator=g) * 2 - 1
        self.patterns = F.interpolate(coarse, size=(image_size + 8, image_size + 8), mode="bicubic",
                                      align_corners=False).clamp(-1, 1)

    def __len__(self) -> int:
        return self.length

    def _frame(self, identity: int, g: torch.Generator) -> torch.Tensor:
        dx, dy = torch.randint(0, 9, (2,), generator=g).tolist()
        s = self.image_size
        gain = 0.8 + 0.4 * torch.rand((), generator=g)
        return (self.patterns[identity, :, dy:dy + s, dx:dx + s] * gain).clamp(-1, 1)

    def frame(self, identity: int, index: int) -> torch.Tensor:
        """Frame ``index`` of ``identity`` (deterministic): (3, S, S) in [-1, 1]."""
        return self._frame(identity, torch.Generator().manual_seed(self.seed * 7919 + identity * 104729 + index))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        n = len(self.patterns)
        source_id = int(torch.randint(0, n, (), generator=g))
        same = bool(torch.rand((), generator=g) < self.p_same)
        target_id = source_id if same else int((source_id + torch.randint(1, n, (), generator=g)) % n)
        return {"source": self._frame(source_id, g), "target": self._frame(target_id, g),
                "same_identity": torch.tensor(same)}


class SyntheticPairDataModule(L.LightningDataModule):
    """DataModule over :class:`SyntheticPairs` (train and val splits with different seeds)."""

    def __init__(self, image_size: int = 64, batch_size: int = 4, train_pairs: int = 64, val_pairs: int = 8,
                 identities: int = 8, p_same: float = 0.2, num_workers: int = 0, seed: int = 0,
                 eval_pairs: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._eval = None

    def eval_pairs(self):
        """Fixed different-identity pairs of the validation patterns, and a gallery of 2 frames per identity."""
        if self._eval is None:
            hp = self.hparams
            data = SyntheticPairs(hp.image_size, 1, hp.identities, 0.0, hp.seed + 1)
            sources = [i % hp.identities for i in range(hp.eval_pairs)]
            targets = [(s + 1 + i // hp.identities) % hp.identities for i, s in enumerate(sources)]
            gallery = [(identity, frame) for identity in range(hp.identities) for frame in (100, 101)]
            uint8 = lambda x: ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)  # noqa: E731
            self._eval = EvalPairs(
                refs=[((f"synthetic{s}", 0), (f"synthetic{t}", 1)) for s, t in zip(sources, targets)],
                source=torch.stack([data.frame(s, 0) for s in sources]),
                target=torch.stack([data.frame(t, 1) for t in targets]),
                source_identity=torch.tensor(sources), target_identity=torch.tensor(targets),
                gallery_refs=[(f"synthetic{i}", f) for i, f in gallery],
                gallery=torch.stack([uint8(data.frame(i, f)) for i, f in gallery]),
                gallery_identity=torch.tensor([i for i, _ in gallery]))
        return self._eval

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        data = SyntheticPairs(hp.image_size, hp.train_pairs, hp.identities, hp.p_same, hp.seed)
        return DataLoader(data, batch_size=hp.batch_size, shuffle=False, num_workers=hp.num_workers, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        hp = self.hparams
        data = SyntheticPairs(hp.image_size, hp.val_pairs, hp.identities, 0.5, hp.seed + 1)
        return DataLoader(data, batch_size=hp.batch_size, num_workers=hp.num_workers)

