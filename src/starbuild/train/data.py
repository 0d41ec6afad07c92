"""Batches of packed token sequences from data/tokens, in an order fixed by the seed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from starbuild.core.layout import SPLITS, TRAIN, VAL
from starbuild.tokenizer.pack import TokenShards, read_index, verify_shards


class TokenSequences(Dataset):
    """The packed rows of one split, memory-mapped from its shards, as int64 tensors."""

    def __init__(self, rows: TokenShards) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.rows[index], dtype=np.int64))


class SeededEpochSampler(Sampler[int]):
    """Positions `start` to `num_samples` of shuffled passes over the data, pass e shuffled by rng([seed, e]);
    of those, the ones of process `rank` of `world`: every world-th position from the rank-th.

    The order depends only on (seed, n, num_samples), never on global RNG state, so a rerun sees the
    same sequences at the same step, a run resumed after `start` samples sees the rest of them, and
    `world` processes together read what one process reads.
    """

    def __init__(self, n: int, num_samples: int, seed: int, start: int = 0, rank: int = 0, world: int = 1) -> None:
        self.n = n
        self.num_samples = num_samples
        self.seed = seed
        self.start = min(start, num_samples)
        self.rank = rank
        self.world = world

    def __len__(self) -> int:
        # The whole run's length even when resumed: Lightning restores the epoch's batch count from the
        # checkpoint and counts on from it, so the epoch (and the iteration here) ends at the last step.
        return self.num_samples // self.world

    def __iter__(self) -> Iterator[int]:
        epoch = self.start // self.n if self.n else 0
        position = epoch * self.n
        while position < self.num_samples:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            for index in order[: self.num_samples - position]:
                if position >= self.start and position % self.world == self.rank:
                    yield int(index)
                position += 1
            epoch += 1


class StridedSampler(Sampler[int]):
    """0 .. n-1 in order, the share of process `rank` of `world`: rank, rank + world, …"""

    def __init__(self, n: int, rank: int = 0, world: int = 1) -> None:
        self.indices = range(rank, n, world)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


class TokenDataModule(L.LightningDataModule):
    """Train batches sampled by SeededEpochSampler; validation on the first val sequences in order."""

    def __init__(self, tokens_dir: Path, batch_size: int, max_steps: int, seed: int, accumulate: int = 1) -> None:
        super().__init__()
        self.tokens_dir = Path(tokens_dir)
        self.batch_size = batch_size
        self.max_steps = max_steps
        # Micro-batches per optimizer step.
        self.accumulate = accumulate
        self.seed = seed
        self.index = read_index(self.tokens_dir)
        # Optimizer steps already taken by the run this one resumes (restored from its checkpoint).
        self.start_step = 0

    def state_dict(self) -> dict[str, int]:
        """Where the train batches stand, saved in Lightning's checkpoints."""
        return {"step": self.trainer.global_step if self.trainer is not None else self.start_step}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Continue the train batches after the checkpoint's step."""
        self.start_step = int(state_dict["step"])

    def split_size(self, split: str) -> int:
        """Number of sequences in `split` according to index.json."""
        return int(self.index["splits"][split]["sequences"])

    def check_files(self) -> None:
        """Open every split and check every shard's hash, so a damaged file fails before training starts."""
        for split in SPLITS:
            self._dataset(split)
        verify_shards(self.tokens_dir)

    def _dataset(self, split: str) -> TokenSequences:
        return TokenSequences(TokenShards(self.tokens_dir, split))

    def train_dataloader(self) -> DataLoader:
        """The micro-batches of steps start_step + 1 to max_steps: the Trainer stops at max_steps.

        With several processes, Lightning hands process r every world_size-th index of this order, so the
        processes of one step together read the sequences one process would read with world_size times
        the batch.
        """
        dataset = self._dataset(TRAIN)
        rank, world = self._process()
        per_step = self.batch_size * self.accumulate * world
        sampler = SeededEpochSampler(len(dataset), self.max_steps * per_step, self.seed,
                                     start=self.start_step * per_step, rank=rank, world=world)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        """Val sequences in file order, each process every world-th; limit_val_batches bounds how many."""
        dataset = self._dataset(VAL)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=StridedSampler(len(dataset), *self._process()))

    def _process(self) -> tuple[int, int]:
        """(rank, world size) of this process; (0, 1) without a Trainer."""
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size
