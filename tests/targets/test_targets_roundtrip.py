"""Acceptance: generated targets reach the student's batches bit for bit, and the pruned targets' ranges are
the teacher's own."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lhotse import CutSet

from kd.data.datamodule import AsrDataModule, DataConfig
from kd.data.tokenizer import Tokenizer
from kd.losses.one_best import shift_path
from kd.targets import TARGET_TYPES, TargetLoader
from kd.targets.loading import collate_computed
from kd.targets.manifest import targets_cuts_path
from kd.train.restore import load_trained_model


def _batches(generated, corpus, **loader_args):
    loader = TargetLoader(generated.manifest, Tokenizer(corpus.bpe_model), **loader_args)
    cuts = CutSet.from_file(targets_cuts_path(generated.out_dir, "mixed"))
    return AsrDataModule(DataConfig(max_duration=5.0), targets=loader).eval_dataloader(cuts)


def _assert_padded(padded: torch.Tensor, stored: np.ndarray) -> None:
    """``padded`` (one utterance's slice of a batch tensor) holds ``stored`` exactly, zeros elsewhere."""
    region = tuple(slice(0, n) for n in stored.shape)
    expected = torch.from_numpy(stored.astype(np.float32 if stored.dtype.kind == "f" else np.int64))
    assert padded.dtype == expected.dtype
    assert torch.equal(padded[region], expected)
    rest = padded.clone()
    rest[region] = 0
    assert not rest.any()


def _assert_same(a, b, where: str = "targets") -> None:
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype, where
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=where)  # NaN: no hypothesis
    else:
        assert a == b, where


def test_targets_round_trip_bit_exactly(generated, corpus):
    S = generated.manifest.config.prune_range
    tokenizer = Tokenizer(corpus.bpe_model)
    seen = []
    for batch in _batches(generated, corpus):
        targets = batch["targets"]
        assert set(targets) == {
            "frames",
            "tokens",
            "token_lens",
            "pruned",
            "pxpy",
            "one_best",
            "hyp",
            "enc_logits",
        }
        for b, cut_id in enumerate(batch["cut_ids"]):
            ref = generated.computed[cut_id]
            seen.append(cut_id)
            T = ref.frames
            assert int(targets["frames"][b]) == T
            assert targets["tokens"][b] == ref.tokens and int(targets["token_lens"][b]) == len(ref.tokens)
            pruned = ref.arrays["pruned"]
            ranges = targets["pruned"]["ranges"][b]
            assert torch.equal(
                ranges[:T], torch.from_numpy(pruned["start"].astype(np.int64))[:, None] + torch.arange(S)
            )
            assert (ranges[T:] == ranges[T - 1]).all()  # padding frames repeat the last window
            for target_type in ("pruned", "pxpy", "one_best", "enc_logits"):
                for name, stored in ref.arrays[target_type].items():
                    if name != "start":
                        _assert_padded(targets[target_type][name][b], stored)
            assert int(targets["one_best"]["lengths"][b]) == len(ref.arrays["one_best"]["nodes"])
            if ref.hyp is None:  # labelled: no search
                assert targets["hyp"]["texts"][b] == "" and torch.isnan(targets["hyp"]["scores"][b])
            else:
                assert targets["hyp"]["texts"][b] == tokenizer.decode(ref.hyp.tokens)
                assert targets["hyp"]["scores"][b] == torch.tensor(ref.hyp.score, dtype=torch.float32)
        # a teacher in the training job gives the very same batch
        online = collate_computed(
            [generated.computed[i] for i in batch["cut_ids"]], TARGET_TYPES, 0, tokenizer
        )
        _assert_same(online, targets)
    assert sorted(seen) == sorted(generated.computed)
    assert len(seen) == generated.manifest.stats.num_cuts == 6


def test_pruned_ranges_equal_the_teachers_on_the_fly(generated, corpus, teacher_dir):
    config = generated.manifest.config
    teacher = load_trained_model(teacher_dir).model
    for batch in _batches(generated, corpus, types=["pruned"]):
        targets = batch["targets"]
        assert set(targets) == {"frames", "tokens", "token_lens", "pruned"}
        for b, n in enumerate(batch["feature_lens"].tolist()):
            with torch.no_grad():
                out = teacher(
                    batch["features"][b : b + 1, :n],
                    batch["feature_lens"][b : b + 1],
                    [targets["tokens"][b]],
                    prune_range=config.prune_range,
                    am_scale=config.am_scale,
                    lm_scale=config.lm_scale,
                )
            T = int(targets["frames"][b])
            assert out.ranges.shape == (1, T, config.prune_range)
            assert torch.equal(targets["pruned"]["ranges"][b, :T], out.ranges[0])


def test_transcripts_and_streaming_shift(generated, corpus):
    cuts = {c.id: c for c in CutSet.from_file(targets_cuts_path(generated.out_dir, "mixed"))}
    plain = list(_batches(generated, corpus, types=["one_best"]))
    shifted = list(_batches(generated, corpus, types=["one_best"], one_best_shift=2, hyp_transcripts=True))
    unlabelled = 0
    for batch, other in zip(plain, shifted):
        assert batch["cut_ids"] == other["cut_ids"]
        for b, cut_id in enumerate(batch["cut_ids"]):
            hyp = generated.computed[cut_id].hyp
            if cuts[cut_id].supervisions[0].text is None:
                unlabelled += 1
                assert batch["texts"][b] == ""
                assert other["texts"][b] == cuts[cut_id].kd_targets["hyp"]["text"] != ""
                assert other["targets"]["tokens"][b] == hyp.tokens
            else:
                assert other["texts"][b] == batch["texts"][b] == cuts[cut_id].supervisions[0].text
        path = batch["targets"]["one_best"]
        expected = shift_path(path["nodes"], path["lengths"], 2, batch["targets"]["frames"])
        assert torch.equal(other["targets"]["one_best"]["nodes"], expected)
    assert unlabelled == 2


def test_loader_refuses_types_the_targets_lack(generated, corpus):
    from kd.targets import TargetsError

    manifest = generated.manifest
    narrow = type(manifest)(**{**manifest.__dict__, "config": type(manifest.config)(types=["pruned"])})
    with pytest.raises(TargetsError, match=r"hold \['pruned'\]; generate the missing ones \(\['pxpy'\]\)"):
        TargetLoader(narrow, Tokenizer(corpus.bpe_model), types=["pxpy"])
