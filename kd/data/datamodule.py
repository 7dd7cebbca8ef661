"""Dataloaders for training and evaluation on lhotse CutSets.

Training batches come from a ``DynamicBucketingSampler`` (similar-duration buckets, at most
``max_duration`` seconds of audio per batch, rank/world-size aware), evaluation batches from a
``DynamicCutSampler`` in manifest order. The sampler is the dataloader's ``sampler`` attribute (also kept as
``AsrDataModule.train_sampler``): the trainer calls ``set_epoch(epoch)`` on it before each epoch and saves
``state_dict()`` in checkpoints; passing that dict back as ``sampler_state_dict`` resumes mid-epoch.
With ``num_workers > 0`` the sampler runs ahead of the trainer by the batches the workers prefetch (two
per worker), so a run resumed from a mid-epoch state skips those few batches.

Given a :class:`~kd.targets.loading.TargetLoader`, both loaders add the teacher targets attached to the
cuts to every batch (``batch["targets"]``).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler, DynamicCutSampler, SpecAugment
from torch.utils.data import DataLoader

from kd.data.dataset import AsrDataset

if TYPE_CHECKING:
    from kd.targets.loading import TargetLoader


@dataclass
class DataConfig:
    """Batching and augmentation of the training data (the ``data:`` section of a config).

    Attributes:
        max_duration: seconds of audio per batch (per rank).
        num_buckets: duration buckets of the training sampler.
        shuffle: shuffle training cuts (reseeded per epoch by ``sampler.set_epoch``).
        drop_last: drop each bucket's last incomplete batch.
        on_the_fly_feats: compute fbank from the audio in the dataloader instead of reading stored features.
        spec_augment: lhotse SpecAugment on training batches (2 frequency masks of up to 27 bins, up to 10
            time masks covering at most 15% of the frames, applied to 90% of utterances).
        time_warp_factor: SpecAugment time warping; 0 turns it off. Off by default because warping moves
            frames against frame-aligned teacher targets used in distillation.
        num_workers: dataloader worker processes (0: load in the training process).
        speed_perturb: add copies of the training cuts at speeds 0.9 and 1.1 (Kaldi-style, tripling an
            epoch) in the dataloader. The perturbed audio has no stored features, so this needs
            ``on_the_fly_feats``; ``kd.bin.perturb_speed`` stores such copies instead (run.sh's teacher).
    """

    max_duration: float = 200.0
    num_buckets: int = 10
    shuffle: bool = True
    drop_last: bool = False
    on_the_fly_feats: bool = False
    spec_augment: bool = False
    time_warp_factor: int = 0
    num_workers: int = 0
    speed_perturb: bool = False

    def __post_init__(self) -> None:
        if self.speed_perturb and not self.on_the_fly_feats:
            raise ValueError(
                "data.speed_perturb: true needs data.on_the_fly_feats: true (stored features exist only for "
                "the original speed)"
            )


@contextlib.contextmanager
def _eager_cuts_intended() -> Iterator[None]:
    """Silences lhotse's warning that a sampler over an eager CutSet saves no memory: the callers read their
    cuts eagerly on purpose (the trainer counts and filters them first), and these corpora fit in memory."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*eagerly read CutSet.*")
        yield


class AsrDataModule:
    """Builds the training and evaluation dataloaders of :class:`~kd.data.dataset.AsrDataset` batches."""

    def __init__(self, config: DataConfig, targets: TargetLoader | None = None) -> None:
        self.config = config
        self.targets = targets
        self.train_sampler: DynamicBucketingSampler | None = None

    def _loader(self, dataset: AsrDataset, sampler) -> DataLoader:
        # The sampler yields whole batches (CutSets), so the DataLoader must not batch again.
        return DataLoader(
            dataset,
            sampler=sampler,
            batch_size=None,
            num_workers=self.config.num_workers,
        )

    def train_dataloader(
        self,
        cuts: CutSet,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        sampler_state_dict: dict | None = None,
    ) -> DataLoader:
        """Shuffled, bucketed, optionally augmented batches of this rank's share of ``cuts``."""
        cfg = self.config
        if cfg.speed_perturb:
            cuts = cuts + cuts.perturb_speed(0.9) + cuts.perturb_speed(1.1)
        with _eager_cuts_intended():
            sampler = DynamicBucketingSampler(
                cuts,
                max_duration=cfg.max_duration,
                num_buckets=cfg.num_buckets,
                shuffle=cfg.shuffle,
                drop_last=cfg.drop_last,
                seed=seed,
                rank=rank,
                world_size=world_size,
            )
        if sampler_state_dict is not None:
            # load_state_dict consumes the dict it is given; keep the caller's copy intact.
            sampler.load_state_dict(copy.deepcopy(sampler_state_dict))
        self.train_sampler = sampler
        spec_augment = None
        if cfg.spec_augment:
            spec_augment = SpecAugment(time_warp_factor=cfg.time_warp_factor or None)
        return self._loader(AsrDataset(cfg.on_the_fly_feats, spec_augment, self.targets), sampler)

    def eval_dataloader(self, cuts: CutSet, *, rank: int = 0, world_size: int = 1) -> DataLoader:
        """Batches of ``cuts`` in manifest order, no augmentation (this rank's share when world_size > 1)."""
        with _eager_cuts_intended():
            sampler = DynamicCutSampler(
                cuts, max_duration=self.config.max_duration, shuffle=False, rank=rank, world_size=world_size
            )
        return self._loader(AsrDataset(self.config.on_the_fly_feats, targets=self.targets), sampler)
