"""The data module: padded batches, on-the-fly vs stored features, ranks, resumable sampler, SpecAugment."""

from __future__ import annotations

import pytest
import torch
from fake_corpora import PreparedCorpus
from lhotse import CutSet

from kd.data.datamodule import AsrDataModule, DataConfig
from kd.data.dataset import PAD_VALUE
from kd.data.io import cuts_path, load_cuts


def _cuts(prepared: PreparedCorpus, part: str) -> CutSet:
    return load_cuts(cuts_path(prepared.fbank_dir, prepared.prefix, part))


def test_eval_batches_are_padded_and_complete(prepared: PreparedCorpus) -> None:
    cuts = _cuts(prepared, "train").to_eager()
    loader = AsrDataModule(DataConfig(max_duration=4.0)).eval_dataloader(cuts)
    seen, padded_batches = [], 0
    for batch in loader:
        feats, lens = batch["features"], batch["feature_lens"]
        assert feats.dtype == torch.float32 and lens.dtype == torch.int64
        assert feats.shape == (len(batch["cut_ids"]), int(lens.max()), 80)
        assert sum(c.duration for c in batch["cuts"]) <= 4.0
        assert list(batch["cuts"].ids) == batch["cut_ids"]
        assert lens.tolist() == sorted(lens.tolist(), reverse=True)
        for i, cut_id in enumerate(batch["cut_ids"]):
            cut = cuts[cut_id]
            n = int(lens[i])
            assert n == cut.num_frames
            assert torch.allclose(feats[i, :n], torch.from_numpy(cut.load_features()))
            assert torch.all(feats[i, n:] == PAD_VALUE)
            assert batch["texts"][i] == cut.supervisions[0].text
        seen += batch["cut_ids"]
        padded_batches += int(lens.min() < lens.max())
    assert sorted(seen) == sorted(cuts.ids)
    assert padded_batches >= 2


def test_unlabelled_cuts_have_empty_texts(prepared: PreparedCorpus) -> None:
    batch = next(
        iter(AsrDataModule(DataConfig(max_duration=100.0)).eval_dataloader(_cuts(prepared, "unlabelled")))
    )
    assert batch["texts"] == [""] * 6


def test_on_the_fly_features_match_stored_ones(prepared: PreparedCorpus) -> None:
    cuts = _cuts(prepared, "dev")
    stored = next(iter(AsrDataModule(DataConfig(max_duration=100.0)).eval_dataloader(cuts)))
    fly = next(
        iter(AsrDataModule(DataConfig(max_duration=100.0, on_the_fly_feats=True)).eval_dataloader(cuts))
    )
    assert fly["cut_ids"] == stored["cut_ids"]
    assert torch.equal(fly["feature_lens"], stored["feature_lens"])
    # Stored features went through lilcom compression; differences stay at its precision.
    assert (fly["features"] - stored["features"]).abs().max() < 0.05


def _train_ids(prepared: PreparedCorpus, **kwargs) -> list[list[str]]:
    module = AsrDataModule(DataConfig(max_duration=3.0, num_buckets=2))
    return [b["cut_ids"] for b in module.train_dataloader(_cuts(prepared, "train"), seed=3, **kwargs)]


def test_two_ranks_see_disjoint_cuts(prepared: PreparedCorpus) -> None:
    rank0 = {c for b in _train_ids(prepared, rank=0, world_size=2) for c in b}
    rank1 = {c for b in _train_ids(prepared, rank=1, world_size=2) for c in b}
    assert rank0 and rank1 and not rank0 & rank1
    assert len(rank0 | rank1) >= 10  # of 12: at most the tail batch is left out to keep the ranks in step


def test_training_order_is_seeded_and_resumable(prepared: PreparedCorpus) -> None:
    full = _train_ids(prepared)
    assert full == _train_ids(prepared)
    assert sorted(c for b in full for c in b) == sorted(_cuts(prepared, "train").ids)
    module = AsrDataModule(DataConfig(max_duration=3.0, num_buckets=2))
    loader = module.train_dataloader(_cuts(prepared, "train"), seed=3)
    it = iter(loader)
    first = [next(it)["cut_ids"] for _ in range(2)]
    state = loader.sampler.state_dict()
    assert module.train_sampler is loader.sampler and first == full[:2]
    resumed = AsrDataModule(DataConfig(max_duration=3.0, num_buckets=2)).train_dataloader(
        _cuts(prepared, "train"), seed=3, sampler_state_dict=state
    )
    assert [b["cut_ids"] for b in resumed] == full[2:]
    assert "diagnostics" in state  # the caller's dict is left intact


def test_spec_augment_masks_only_valid_frames(prepared: PreparedCorpus) -> None:
    torch.manual_seed(0)
    import random

    random.seed(0)
    cfg = DataConfig(max_duration=100.0, spec_augment=True, shuffle=False)
    batch = next(iter(AsrDataModule(cfg).train_dataloader(_cuts(prepared, "train"))))
    clean = next(iter(AsrDataModule(DataConfig(max_duration=100.0)).eval_dataloader(batch["cuts"])))
    assert batch["cut_ids"] == clean["cut_ids"]
    feats, lens = batch["features"], batch["feature_lens"]
    assert not torch.equal(feats, clean["features"])
    for i, n in enumerate(lens.tolist()):
        assert torch.all(feats[i, n:] == PAD_VALUE)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_workers_yield_the_same_batches(prepared: PreparedCorpus, num_workers: int) -> None:
    cfg = DataConfig(max_duration=3.0, num_workers=num_workers)
    ids = [b["cut_ids"] for b in AsrDataModule(cfg).eval_dataloader(_cuts(prepared, "dev"))]
    assert sorted(c for b in ids for c in b) == sorted(_cuts(prepared, "dev").ids)


def test_speed_perturbation_triples_the_epoch_and_needs_on_the_fly_features(prepared):
    with pytest.raises(ValueError, match="on_the_fly_feats"):
        DataConfig(speed_perturb=True)
    cuts = CutSet.from_file(cuts_path(prepared.fbank_dir, prepared.prefix, "train")).to_eager()
    module = AsrDataModule(DataConfig(max_duration=1000.0, speed_perturb=True, on_the_fly_feats=True))
    batches = list(module.train_dataloader(cuts))
    ids = [i for b in batches for i in b["cut_ids"]]
    assert len(ids) == 3 * len(cuts)
    assert sum(i.endswith("_sp0.9") for i in ids) == len(cuts)
    assert all(torch.isfinite(b["features"]).all() for b in batches)
