"""Shallow fusion of the LSTM LM: in modified beam search, in the decoding command line, and in the teacher's
hypotheses for unlabelled cuts (recorded in the targets manifest)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest
import torch
from lhotse import CutSet

from kd.bin import decode, generate_targets
from kd.data.dataset import AsrDataset
from kd.data.tokenizer import Tokenizer
from kd.decode import modified_beam_search
from kd.lm import LmConfig, LmTrainer, LstmLm, load_lm
from kd.targets import LmSpec, TargetConfig, TargetLoader, TargetsError, TeacherSpec, generate, load_manifest
from kd.targets.manifest import hash_state_dict, manifest_path, targets_cuts_path
from kd.targets.storage import cut_meta, is_unlabelled
from kd.train.restore import load_trained_model

from .shared import fake_model, reference, targets_conftest


def random_lm(vocab_size: int, seed: int = 0) -> LstmLm:
    torch.manual_seed(seed)
    return LstmLm(vocab_size, 8, 8, num_layers=2, dropout=0.0, tie_weights=True).eval()


def encoder_frames(lens: list[int], dim: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(lens), max(lens), dim, generator=g), torch.tensor(lens)


def test_scale_zero_is_no_lm_and_a_large_scale_imposes_the_lm() -> None:
    model = fake_model.make_model(vocab_size=6)
    encoder_out, lens = encoder_frames([20, 14, 20], seed=7)
    plain = modified_beam_search(model, encoder_out, lens, beam=4)
    assert modified_beam_search(model, encoder_out, lens, beam=4, lm=random_lm(6), lm_scale=0.0) == plain

    # An LM that expects token 4 after any history: every other token costs 10 nats times the scale.
    favoured = 4
    lm = random_lm(6)
    with torch.no_grad():
        lm.output.weight.zero_()
        lm.output.bias.fill_(-10.0)
        lm.output.bias[favoured] = 0.0
    assert any(t != favoured for h in plain for t in h)  # the premise: the model alone says other tokens
    fused = modified_beam_search(model, encoder_out, lens, beam=4, lm=lm, lm_scale=3.0)
    assert fused != plain
    assert all(t == favoured for h in fused for t in h) and any(fused)


def test_exhaustive_beam_with_the_lm_is_exact() -> None:
    """A beam that keeps every candidate returns the sequence of the largest exact fused score (summed over
    alignments, the LM stepped along each), so the LM's states are carried and merged right."""
    model = fake_model.make_model(vocab_size=3)
    lm = random_lm(3, seed=2)
    encoder_out, lens = encoder_frames([5], seed=3)
    exact = reference.exact_sequence_scores(model, encoder_out[0], lm, 0.7)
    best = max(exact, key=exact.get)
    wide = modified_beam_search(model, encoder_out, lens, beam=256, lm=lm, lm_scale=0.7, return_scores=True)
    assert tuple(wide.hyps[0]) == best
    assert wide.scores[0] == pytest.approx(exact[best], abs=1e-4)


def test_a_batch_with_the_lm_equals_each_utterance_alone() -> None:
    model = fake_model.make_model(vocab_size=6, decoder="stateless")
    lm = random_lm(6)
    lens = [10, 3, 7, 0, 10]
    encoder_out, lens_t = encoder_frames(lens)
    kwargs = dict(beam=3, lm=lm, lm_scale=0.8, return_timestamps=True, return_scores=True)
    batch = modified_beam_search(model, encoder_out, lens_t, **kwargs)
    for b, n in enumerate(lens):
        alone = modified_beam_search(model, encoder_out[b : b + 1, :n], torch.tensor([n]), **kwargs)
        assert batch.hyps[b] == alone.hyps[0] and batch.timestamps[b] == alone.timestamps[0]
        assert batch.scores[b] == pytest.approx(alone.scores[0], abs=1e-4)


@pytest.fixture(scope="module")
def lm_dir(corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LM trained for two epochs on the transcripts of the target tests' corpus."""
    exp = tmp_path_factory.mktemp("lm")
    config = LmConfig(
        embedding_dim=8, hidden_dim=8, num_layers=1, num_epochs=2, max_sentences=2, device="cpu"
    )
    LmTrainer(config, exp, corpus.labelled, corpus.labelled, corpus.bpe_model).fit()
    return exp


def test_decode_command_line_tags_the_lm_results(corpus, lm_dir, tmp_path, monkeypatch, capsys):
    exp = targets_conftest.save_teacher(tmp_path / "teacher", corpus.bpe_model, seed=1)
    argv = ["decode", "--exp-dir", str(exp), "--cuts", str(corpus.labelled), "--beam", "2", "--device", "cpu"]
    fusion = ["--lm-exp", str(lm_dir), "--lm-scale", "0.5"]
    fused = "modified_beam_search_lm_shallow_fusion"
    # One run decodes every method from one encoder pass; the LM-fused search alone has --lm-blank-penalty.
    both = [*argv, "--methods", "greedy_search", "modified_beam_search", fused, *fusion]
    monkeypatch.setattr(sys, "argv", [*both, "--lm-blank-penalty", "0.25"])
    decode.main()
    tags = ("greedy_search", "modified_beam_search_beam_2", "modified_beam_search_beam_2_lm_0.5_bp_0.25")
    for tag in tags:
        for kind in ("recogs", "errs", "wer"):
            assert (exp / f"{kind}-labelled-{tag}.txt").is_file(), (kind, tag)
    record = json.loads((exp / f"wer-labelled-{tags[2]}.json").read_text())
    assert record["method"] == tags[2] and record["num_utts"] == 4
    assert record["model"]["lm"] == {"checkpoint": str(lm_dir / "epoch-2.pt"), "scale": 0.5}
    assert record["model"]["blank_penalty"] == 0.25
    for tag in tags[:2]:
        model_info = json.loads((exp / f"wer-labelled-{tag}.json").read_text())["model"]
        assert "lm" not in model_info and "blank_penalty" not in model_info
    together = [(exp / f"recogs-labelled-{tag}.txt").read_text() for tag in tags]
    assert together[1] != together[2]  # the LM was fused: this random teacher's hypotheses change with it

    # Each method alone, in a run of its own, gives the same hypotheses.
    for methods, tag, text in zip(
        (["greedy_search"], ["modified_beam_search"], [fused, *fusion, "--blank-penalty", "0.25"]),
        tags,
        together,
    ):
        (exp / f"recogs-labelled-{tag}.txt").unlink()
        monkeypatch.setattr(sys, "argv", [*argv, "--methods", *methods])
        decode.main()
        assert (exp / f"recogs-labelled-{tag}.txt").read_text() == text, tag

    for wrong, error in (
        ([*argv, "--methods", "modified_beam_search", *fusion], f"add {fused} to --methods"),
        ([*argv, "--methods", fused], f"{fused} needs an LM"),
        ([*argv, "--methods", fused, "--lm-exp", str(lm_dir)], "go together"),
        ([*argv, "--methods", fused, "--lm-scale", "0.5"], "go together"),
        ([*argv, "--lm-blank-penalty", "1"], "--lm-blank-penalty: for shallow fusion"),
        ([*argv, "--methods", fused, *fusion, "--lm-blank-penalty", "nan"], "must be a finite number"),
    ):
        monkeypatch.setattr(sys, "argv", wrong)
        with pytest.raises(SystemExit):
            decode.main()
        assert error in capsys.readouterr().err, wrong


def _generate(corpus, teacher_dir: Path, out_dir: Path, lm: LmSpec | None):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*exceeded the max_duration.*")
        warnings.filterwarnings("ignore", message=".*eagerly read CutSet.*")
        return generate.generate_targets(
            TeacherSpec(str(teacher_dir)),
            corpus.cuts,
            out_dir,
            "mixed",
            TargetConfig(types=["one_best", "hyp"], topk=4, prune_range=3, beam=2),
            max_duration=0.1,  # batches of one cut, as the direct search below
            lm=lm,
        )


def test_lm_fused_hypotheses_are_recorded_in_the_targets(corpus, teacher_dir, lm_dir, tmp_path):
    scale = 2.0
    manifest = _generate(corpus, teacher_dir, tmp_path, LmSpec(str(lm_dir), scale))
    tokenizer = Tokenizer(corpus.bpe_model)
    lm = load_lm(lm_dir, tokenizer=tokenizer)
    assert manifest.lm.scale == scale and manifest.lm.checkpoint == str(lm_dir / "epoch-2.pt")
    assert manifest.lm.weights_hash == hash_state_dict(lm.state_dict())
    assert load_manifest(manifest_path(tmp_path, "mixed")).lm == manifest.lm

    teacher = load_trained_model(teacher_dir).model
    changed = 0
    unlabelled = [c for c in CutSet.from_file(targets_cuts_path(tmp_path, "mixed")) if is_unlabelled(c)]
    assert unlabelled
    for cut in unlabelled:
        batch = AsrDataset()[CutSet.from_cuts([cut])]
        with torch.no_grad():
            encoder_out, lens = teacher.encoder(batch["features"], batch["feature_lens"])
        fused = modified_beam_search(
            teacher, encoder_out, lens, beam=2, lm=lm, lm_scale=scale, return_scores=True
        )
        plain = modified_beam_search(teacher, encoder_out, lens, beam=2)
        hyp = cut_meta(cut)["hyp"]
        assert hyp["text"] == tokenizer.decode(fused.hyps[0]) and cut_meta(cut)["tokens"] == fused.hyps[0]
        assert hyp["score"] == pytest.approx(fused.scores[0], abs=1e-4)
        changed += fused.hyps[0] != plain[0]
    assert changed  # the LM did shape some hypothesis

    # The targets come from the same teacher: a student's loader takes them like targets made without an LM.
    info = TeacherSpec(str(teacher_dir)).load("cpu")[1]
    loader = TargetLoader(manifest, tokenizer, types=["hyp"], teacher=info, hyp_transcripts=True)
    assert loader.texts(unlabelled) == [cut_meta(c)["hyp"]["text"] for c in unlabelled]

    assert _generate(corpus, teacher_dir, tmp_path, LmSpec(str(lm_dir), scale)).stats == manifest.stats
    with pytest.raises(TargetsError, match="the LM .*epoch-2.pt.*; this run's is none"):
        _generate(corpus, teacher_dir, tmp_path, None)
    with pytest.raises(TargetsError, match="scale 2.*this run's is .*scale 1"):
        _generate(corpus, teacher_dir, tmp_path, LmSpec(str(lm_dir), 1.0))

    # A shard process loads the LM itself and refuses one other than the manifest's.
    args = (manifest, tmp_path, "mixed", 0, "cpu", 0.1, 0)
    spec = TeacherSpec(str(teacher_dir))
    assert generate._run_shard_process(spec, LmSpec(str(lm_dir), scale), *args).num_cuts > 0
    with pytest.raises(TargetsError, match="loaded the LM none, not .*epoch-2.pt"):
        generate._run_shard_process(spec, None, *args)


def test_generate_targets_command_line_with_an_lm(corpus, teacher_dir, lm_dir, tmp_path, monkeypatch, capsys):
    def run(types: str, *extra: str) -> None:
        argv = ["generate_targets", "--exp-dir", str(teacher_dir), "--cuts", str(corpus.cuts), "--out-dir"]
        argv += [str(tmp_path), "--types", types, "--beam", "2", "--device", "cpu", "--max-duration", "0.1"]
        monkeypatch.setattr(sys, "argv", [*argv, *extra])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*exceeded the max_duration.*")
            generate_targets.main()

    lm = ["--lm-exp", str(lm_dir), "--lm-scale", "2"]
    for types, extra, error in (
        ("hyp", lm[:2], "go together"),
        ("hyp", lm[2:], "go together"),
        ("enc_logits", lm, "search no hypotheses"),
    ):
        with pytest.raises(SystemExit):
            run(types, *extra)
        assert error in capsys.readouterr().err
    assert not manifest_path(tmp_path, "tiny_mixed").exists()

    run("hyp", *lm, "--lm-epoch", "1")
    manifest = load_manifest(manifest_path(tmp_path, "tiny_mixed"))
    assert manifest.config.types == ["hyp"] and manifest.stats.num_cuts == 6
    assert manifest.lm.scale == 2.0 and manifest.lm.checkpoint == str(lm_dir / "epoch-1.pt")
    assert manifest.lm.weights_hash == hash_state_dict(load_lm(lm_dir, epoch=1).state_dict())
    assert manifest.lm.weights_hash != hash_state_dict(load_lm(lm_dir).state_dict())
