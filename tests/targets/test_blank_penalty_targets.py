"""The blank penalty in the teacher's hypothesis search (it shapes the hypotheses of unlabelled cuts, never
the stored posteriors) and on the command lines of target generation and decoding."""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest
import torch
from lhotse import CutSet

from kd.bin import decode, generate_targets
from kd.data.dataset import AsrDataset
from kd.decode.beam_search import modified_beam_search
from kd.targets import TargetsError, load_manifest
from kd.targets.compute import compute_targets
from kd.targets.config import TargetConfig
from kd.targets.manifest import manifest_path, targets_cuts_path
from kd.targets.storage import cut_meta, is_unlabelled
from kd.train.restore import load_trained_model

from .conftest import save_teacher

BLANK = 0
K = 4
# The random teachers emit a symbol on almost every frame, so the penalties here go the other way: towards
# blank.
PENALTY = -3.0
FP16_RTOL = 2**-10


def test_the_penalty_shapes_the_hypothesis_not_the_stored_posteriors(teacher_model):
    torch.manual_seed(0)
    x, x_lens = torch.randn(1, 60, 80), torch.tensor([60])
    config = TargetConfig(types=["pxpy", "one_best", "hyp"], topk=K, beam=2, blank_penalty=PENALTY)
    [got] = compute_targets(teacher_model, x, x_lens, [None], config)
    with torch.no_grad():
        enc, enc_lens = teacher_model.encoder(x, x_lens)
    kwargs = dict(beam=2, return_timestamps=True, return_scores=True)
    best = modified_beam_search(teacher_model, enc, enc_lens, blank_penalty=PENALTY, **kwargs)
    plain = modified_beam_search(teacher_model, enc, enc_lens, **kwargs)
    assert got.hyp.tokens == got.tokens == best.hyps[0]
    assert got.hyp.timestamps == best.timestamps[0]
    assert got.hyp.score == pytest.approx(best.scores[0])
    assert len(best.hyps[0]) < len(plain.hyps[0])  # the penalty reached the search

    # pxpy: the teacher's lattice of the hypothesis, as for a labelled cut with that transcript
    [labelled] = compute_targets(
        teacher_model, x, x_lens, [best.hyps[0]], TargetConfig(types=["pxpy"], topk=K)
    )
    for name in ("px", "py"):
        assert np.array_equal(got.arrays["pxpy"][name], labelled.arrays["pxpy"][name]), name

    # one_best: on the hypothesis' path, the unpenalised teacher's log-probs (float64 reference)
    stored = got.arrays["one_best"]
    tokens = got.tokens
    with torch.no_grad():
        dec = teacher_model.decoder(torch.tensor([[BLANK, *tokens]]), torch.tensor([len(tokens) + 1]))
        for (t, u), logprobs, ids in zip(stored["nodes"].tolist(), stored["logprobs"], stored["ids"]):
            reference = teacher_model.joiner(enc[0, t], dec[0, u]).double().log_softmax(-1)
            top = reference.sort(descending=True)
            assert ids.astype(np.int64).tolist() == top.indices[:K].tolist(), (t, u)
            torch.testing.assert_close(
                torch.from_numpy(logprobs).double(), top.values[:K], rtol=FP16_RTOL, atol=1e-6
            )


def _run_generate(monkeypatch, corpus, teacher_dir, out_dir, types: str, *extra: str) -> None:
    argv = ["generate_targets", "--exp-dir", str(teacher_dir), "--cuts", str(corpus.cuts), "--out-dir"]
    argv += [str(out_dir), "--types", types, "--beam", "2", "--device", "cpu", "--max-duration", "0.1"]
    monkeypatch.setattr(sys, "argv", [*argv, *extra])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*exceeded the max_duration.*")
        warnings.filterwarnings("ignore", message=".*eagerly read CutSet.*")
        generate_targets.main()


def test_generate_targets_command_line_records_the_penalty(
    corpus, teacher_dir, tmp_path, monkeypatch, capsys
):
    with pytest.raises(SystemExit):
        _run_generate(monkeypatch, corpus, teacher_dir, tmp_path, "enc_logits", "--blank-penalty", "1")
    assert "search no hypotheses" in capsys.readouterr().err

    _run_generate(monkeypatch, corpus, teacher_dir, tmp_path, "hyp", "--blank-penalty", "2")
    manifest = load_manifest(manifest_path(tmp_path, "tiny_mixed"))
    assert manifest.config.blank_penalty == 2.0 and manifest.lm is None
    teacher = load_trained_model(teacher_dir).model
    unlabelled = [c for c in CutSet.from_file(targets_cuts_path(tmp_path, "tiny_mixed")) if is_unlabelled(c)]
    assert unlabelled
    for cut in unlabelled:
        batch = AsrDataset()[CutSet.from_cuts([cut])]
        with torch.no_grad():
            encoder_out, lens = teacher.encoder(batch["features"], batch["feature_lens"])
        [hyp] = modified_beam_search(teacher, encoder_out, lens, beam=2, blank_penalty=2.0)
        assert cut_meta(cut)["tokens"] == hyp

    # another penalty is another setting: it may not write into the same directory
    changed = "'blank_penalty': 2.0, .*} there, .*'blank_penalty': 1.0, .*} now"
    with pytest.raises(TargetsError, match=changed):
        _run_generate(monkeypatch, corpus, teacher_dir, tmp_path, "hyp", "--blank-penalty", "1")


def test_decode_command_line_tags_the_penalty(corpus, tmp_path, monkeypatch):
    exp = save_teacher(tmp_path / "teacher", corpus.bpe_model, seed=1)
    argv = ["decode", "--exp-dir", str(exp), "--cuts", str(corpus.labelled), "--beam", "2", "--device", "cpu"]
    argv += ["--methods", "greedy_search", "modified_beam_search"]
    for extra in ([], ["--blank-penalty", "-5"]):
        monkeypatch.setattr(sys, "argv", [*argv, *extra])
        decode.main()
    for tag in ("greedy_search", "modified_beam_search_beam_2"):
        plain = json.loads((exp / f"wer-labelled-{tag}.json").read_text())
        penalised = json.loads((exp / f"wer-labelled-{tag}_bp_-5.json").read_text())
        assert penalised["method"] == f"{tag}_bp_-5" and penalised["model"]["blank_penalty"] == -5.0
        assert "blank_penalty" not in plain["model"]
        recogs = [(exp / f"recogs-labelled-{t}.txt").read_text() for t in (tag, f"{tag}_bp_-5")]
        assert recogs[0] != recogs[1], tag  # the penalty reached the search

    monkeypatch.setattr(sys, "argv", [*argv, "--blank-penalty", "nan"])
    with pytest.raises(SystemExit):
        decode.main()
