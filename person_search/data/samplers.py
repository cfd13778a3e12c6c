"""Training samplers: identity batches for metric learning (P identities x K instances each), and
Detectron2's shuffled index stream resumable at any position."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
from detectron2.data.samplers import TrainingSampler
from detectron2.utils import comm
from torch.utils.data import get_worker_info
from torch.utils.data.sampler import Sampler

__all__ = ["PKSampler", "ResumableTrainingSampler"]


class PKSampler(Sampler):
    """Infinite stream of dataset indices grouped as P identities x K instances.

    One pass ("epoch") over the data: every identity's images are shuffled and cut into chunks of
    K (an identity with fewer than K images is topped up by sampling its images with replacement;
    a last incomplete chunk is dropped); then batches are formed by drawing P distinct identities
    that still have chunks, at random, until fewer than P remain. Passes repeat forever with a new
    shuffle (the stream is a pure function of ``seed``). ``start_batch`` skips the first global
    batches of that stream (a run resumed at iteration ``i`` passes ``i``): only the shuffles are
    replayed, no image is read.

    Distributed training (like Detectron2's ``TrainingSampler``): every rank builds the same global
    stream and keeps the chunks ``rank, rank + world, ...`` of each global batch, so a rank's batch
    of ``batch_size / world`` images holds ``P / world`` whole identities. Within one global batch,
    identities are distinct. The sampler also shards itself over data-loader workers by whole
    batches, so use it with ``ToIterableDataset(..., shard_sampler=False)`` (as
    :func:`~person_search.data.reid_build.build_reid_train_loader` does): Detectron2's default
    per-index worker sharding would split the K-chunks.
    """

    def __init__(
        self,
        person_ids: Sequence[int],
        batch_size: int,
        num_instances: int,
        *,
        seed: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        start_batch: int = 0,
    ):
        """
        Args:
            person_ids: identity of every dataset index (len = dataset size).
            batch_size: images per global batch (all ranks), a multiple of ``num_instances``.
            num_instances: K.
            seed: RNG seed shared by all ranks (None: a shared random seed).
            rank, world_size: defaults from ``detectron2.utils.comm``.
            start_batch: global batches of the stream to skip, >= 0.
        """
        if start_batch < 0:
            raise ValueError(f"PKSampler: start_batch must be >= 0, got {start_batch}")
        self.start_batch = int(start_batch)
        if num_instances <= 0 or batch_size % num_instances != 0:
            raise ValueError(
                f"PKSampler: batch size {batch_size} must be a positive multiple of "
                f"K = {num_instances} (SOLVER.IMS_PER_BATCH, DATALOADER.NUM_INSTANCES)"
            )
        self.rank = comm.get_rank() if rank is None else rank
        self.world_size = comm.get_world_size() if world_size is None else world_size
        self.num_ids_per_batch = batch_size // num_instances
        if self.num_ids_per_batch % self.world_size != 0:
            raise ValueError(
                f"PKSampler: P = {self.num_ids_per_batch} identities per batch must be divisible "
                f"by the world size {self.world_size}"
            )
        pids = np.asarray(person_ids, dtype=np.int64)
        self.unique_pids, inverse = np.unique(pids, return_inverse=True)
        if len(self.unique_pids) < self.num_ids_per_batch:
            raise ValueError(
                f"PKSampler: P = {self.num_ids_per_batch} identities per batch but the data has "
                f"only {len(self.unique_pids)}"
            )
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse))[:-1]
        self.index_groups = np.split(order, bounds)  # dataset indices of each identity
        self.num_instances = num_instances
        self.seed = int(comm.shared_random_seed() if seed is None else seed)

    def _epoch(self, rng: np.random.Generator) -> Iterator[list[np.ndarray]]:
        """Global batches (P chunks of K indices each) of one pass."""
        k = self.num_instances
        chunks_per_id = []
        for group in self.index_groups:
            if len(group) < k:
                group = rng.choice(group, size=k, replace=True)
            group = rng.permutation(group)
            chunks_per_id.append([group[i * k : (i + 1) * k] for i in range(len(group) // k)])
        remaining = np.array([len(c) for c in chunks_per_id])
        p = self.num_ids_per_batch
        while (remaining > 0).sum() >= p:
            batch = []
            for i in rng.choice(np.flatnonzero(remaining > 0), size=p, replace=False):
                remaining[i] -= 1
                batch.append(chunks_per_id[i][remaining[i]])
            yield batch

    def global_batches(self) -> Iterator[list[np.ndarray]]:
        """The infinite global stream: lists of P index chunks (K indices each)."""
        rng = np.random.default_rng(self.seed)
        while True:
            yield from self._epoch(rng)

    def __iter__(self) -> Iterator[int]:
        # Data-loader workers split the stream by whole global batches (worker w takes batches
        # w, w + n, ...); the loader's round robin over workers restores the global order.
        info = get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        batches = itertools.islice(
            self.global_batches(), self.start_batch + worker, None, num_workers
        )
        for batch in batches:
            for chunk in batch[self.rank :: self.world_size]:
                yield from (int(i) for i in chunk)


class ResumableTrainingSampler(TrainingSampler):
    """Detectron2's ``TrainingSampler`` (same seed, same infinite per-process stream) started
    after the first ``start`` indices of this process's stream.

    A run resumed at iteration ``i`` with ``start = i * (images per process and batch)`` reads
    the indices the interrupted run would have read next. Skipping is cheap (one shuffle per
    pass over the data, no image is read).
    """

    def __init__(self, size: int, shuffle: bool = True, seed: int | None = None, *, start: int = 0):
        """
        Args:
            size, shuffle, seed: as ``TrainingSampler`` (seed None: a random seed shared by all
                processes).
            start: indices of this process's stream to skip, >= 0.
        """
        super().__init__(size, shuffle, seed)
        if start < 0:
            raise ValueError(f"ResumableTrainingSampler: start must be >= 0, got {start}")
        self.start = int(start)

    @property
    def seed(self) -> int:
        """The seed of the shuffles (drawn when none was given)."""
        return self._seed

    def __iter__(self) -> Iterator[int]:
        yield from itertools.islice(super().__iter__(), self.start, None)
