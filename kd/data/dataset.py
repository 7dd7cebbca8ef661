"""Turns a sampled CutSet into a padded batch of features and transcripts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from lhotse import CutSet
from lhotse.cut import Cut
from lhotse.dataset import SpecAugment
from lhotse.dataset.collation import collate_features
from lhotse.dataset.input_strategies import OnTheFlyFeatures

from kd.data.features import make_fbank_extractor

if TYPE_CHECKING:
    from kd.targets.loading import TargetLoader

PAD_VALUE = 0.0  # value of the feature frames past each utterance's length


def cut_text(cut: Cut) -> str:
    """The transcript of a cut, ``""`` when it is unlabelled (its supervisions have no text)."""
    return " ".join(s.text for s in cut.supervisions if s.text)


class AsrDataset(torch.utils.data.Dataset):
    """Map-style dataset indexed by the CutSets a lhotse sampler yields.

    Each item is a dict:
        ``features``: (B, T, 80) float32 log-mel features, frames past ``feature_lens`` set to ``PAD_VALUE``;
        ``feature_lens``: (B,) int64 number of valid frames;
        ``texts``: list of B transcripts, ``""`` for unlabelled cuts;
        ``cut_ids``: list of B cut ids;
        ``cuts``: the CutSet in batch order (longest first), for loading arrays attached to the cuts;
        ``targets`` (with a ``targets`` loader): the teacher targets attached to the cuts, padded (see
        kd.targets.loading); ``texts`` then come from the loader (the teacher's hypothesis for unlabelled
        cuts when it is asked to).
    """

    def __init__(
        self,
        on_the_fly_feats: bool = False,
        spec_augment: SpecAugment | None = None,
        targets: TargetLoader | None = None,
    ) -> None:
        super().__init__()
        self.targets = targets
        # On-the-fly features run in dataloader workers on CPU, so always lhotse's own extractor, one
        # utterance at a time as stored features are made (lhotse's batched path pads the audio, which
        # changes each utterance's last frame).
        self.on_the_fly = (
            OnTheFlyFeatures(make_fbank_extractor("lhotse"), use_batch_extract=False)
            if on_the_fly_feats
            else None
        )
        self.spec_augment = spec_augment

    def __getitem__(self, cuts: CutSet) -> dict:
        cuts = CutSet.from_cuts(sorted(cuts, key=lambda c: c.duration, reverse=True))
        if self.on_the_fly is not None:
            features, feature_lens = self.on_the_fly(cuts)
        else:
            features, feature_lens = collate_features(cuts)
        features = features.float()
        feature_lens = feature_lens.long()
        if self.spec_augment is not None:
            # Augment each utterance over its own frames only, so masks never land on padding and the
            # mask value (the utterance mean) is not dragged down by it.
            for i, n in enumerate(feature_lens.tolist()):
                features[i, :n] = self.spec_augment(features[i : i + 1, :n])[0]
        pad = torch.arange(features.size(1)) >= feature_lens.unsqueeze(1)  # (B, T)
        features = features.masked_fill(pad.unsqueeze(-1), PAD_VALUE)
        batch = {
            "features": features,
            "feature_lens": feature_lens,
            "texts": [cut_text(c) for c in cuts],
            "cut_ids": [c.id for c in cuts],
            "cuts": cuts,
        }
        if self.targets is not None:
            batch["targets"] = self.targets.collate(cuts, feature_lens)
            batch["texts"] = self.targets.texts(cuts)
        return batch
