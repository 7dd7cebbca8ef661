"""The distillation objective on stored targets and with an online teacher: the same loss either way, a
vanishing KL when the student is the teacher, and a student trained from run.sh-style configs."""

from __future__ import annotations

import warnings

import pytest
import torch
import yaml
from lhotse import CutSet

from kd.config import ConfigError
from kd.data.datamodule import AsrDataModule, DataConfig
from kd.data.tokenizer import Tokenizer
from kd.targets import TargetLoader
from kd.targets.manifest import targets_cuts_path
from kd.train.distill import DistillObjective, KdConfig, OnlineTeacher, training_cuts
from kd.train.objective import LossConfig
from kd.train.restore import load_trained_model

from .conftest import TINY_MODEL, save_teacher, tiny_teacher

KL_METHODS = ("collapsed", "soft_lattice", "encoder_logits")
METHODS = (*KL_METHODS, "one_best", "hard")


# TINY_MODEL's keys that make it a cascaded (causal first pass + non-causal second pass) transducer.
_CASCADED = {
    "encoder": {**TINY_MODEL["encoder"], "causal": True, "chunk_size": 4, "left_context_frames": 8},
    # the second pass is a stack of the same tiny blocks, without a front-end of its own
    "second_pass": {k: v for k, v in TINY_MODEL["encoder"].items() if k != "subsampling_channels"},
}


def _loss_config(generated) -> LossConfig:
    cfg = generated.manifest.config
    return LossConfig(prune_range=cfg.prune_range, lm_scale=cfg.lm_scale, am_scale=cfg.am_scale, warm_step=1)


def _batches(generated, corpus, kd: KdConfig) -> list[dict]:
    """Batches of one cut each (as the targets were generated), labelled and unlabelled."""
    loader = TargetLoader(generated.manifest, Tokenizer(corpus.bpe_model), types=kd.target_types)
    cuts = CutSet.from_file(targets_cuts_path(generated.out_dir, "mixed"))
    data = AsrDataModule(DataConfig(max_duration=generated.max_duration), targets=loader)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*exceeded the max_duration.*")
        return list(data.eval_dataloader(cuts))


@pytest.mark.parametrize("method", METHODS)
def test_stored_and_online_targets_give_the_same_loss(generated, corpus, teacher_dir, method):
    tokenizer = Tokenizer(corpus.bpe_model)
    kd = KdConfig(
        method=method, teacher=str(teacher_dir), topk=generated.manifest.config.topk, unlabelled_rnnt=True
    )
    loss = _loss_config(generated)
    stored = DistillObjective(loss, kd, tokenizer)
    online = DistillObjective(loss, kd, tokenizer, OnlineTeacher(kd, loss, tokenizer, torch.device("cpu")))
    student = tiny_teacher(tokenizer.vocab_size, seed=7)
    batches = _batches(generated, corpus, kd)
    assert any(not t for b in batches for t in b["texts"]), "the batches should include an unlabelled cut"
    for batch in batches:
        a, b = stored(student, batch, step=10), online(student, batch, step=10)
        assert a.terms.keys() == b.terms.keys()
        for name in a.terms:
            assert a.terms[name] == pytest.approx(b.terms[name], rel=1e-5, abs=1e-6), (name, batch["cut_ids"])
        torch.testing.assert_close(a.total, b.total)


def test_an_online_teacher_that_has_not_finished_training_is_refused(corpus, tmp_path):
    """run.sh trains a teacher row and its students in one stage: a student must not learn from a teacher
    that is still training (or was stopped) unless it names the epoch."""
    teacher = save_teacher(tmp_path / "teacher", corpus.bpe_model, seed=1, epoch=1)
    config = yaml.safe_load((teacher / "config.yaml").read_text())
    config["train"]["num_epochs"] = 3
    (teacher / "config.yaml").write_text(yaml.safe_dump(config))
    tokenizer = Tokenizer(corpus.bpe_model)
    kd = KdConfig(method="soft_lattice", source="online", teacher=str(teacher))
    with pytest.raises(ConfigError, match=r"has trained 1 of its 3 epochs: finish its training first"):
        OnlineTeacher(kd, LossConfig(), tokenizer, torch.device("cpu"))
    kd.teacher_epoch = 1
    assert not OnlineTeacher(kd, LossConfig(), tokenizer, torch.device("cpu")).teacher.training


@pytest.mark.parametrize("method", KL_METHODS)
def test_kl_vanishes_when_the_student_is_the_teacher(generated, corpus, teacher_dir, method):
    tokenizer = Tokenizer(corpus.bpe_model)
    kd = KdConfig(method=method)
    objective = DistillObjective(_loss_config(generated), kd, tokenizer)
    teacher = load_trained_model(teacher_dir, None, 1, "cpu").model
    student = tiny_teacher(tokenizer.vocab_size, seed=7)
    for batch in _batches(generated, corpus, kd):
        same = objective(teacher, batch, step=10).terms[f"kd_{method}"]
        other = objective(student, batch, step=10).terms[f"kd_{method}"]
        frames = int(batch["targets"]["frames"].sum())
        # The stored teacher side is fp16: its rounding (~1e-3 relative) is all that is left.
        assert abs(same) < 2e-3 * frames
        assert other > 10 * max(abs(same), 1e-4)


def test_one_best_ce_of_the_teacher_is_its_path_entropy(generated, corpus, teacher_dir):
    tokenizer = Tokenizer(corpus.bpe_model)
    kd = KdConfig(method="one_best")
    objective = DistillObjective(_loss_config(generated), kd, tokenizer)
    teacher = load_trained_model(teacher_dir, None, 1, "cpu").model
    for batch in _batches(generated, corpus, kd):
        t = batch["targets"]["one_best"]
        n = int(t["lengths"][0])
        q = torch.cat([t["logprobs"][0, :n], t["rest"][0, :n, None]], dim=1).double()
        q = q - q.logsumexp(dim=1, keepdim=True)  # the k + 1 buckets, renormalised as the loss does
        entropy = -(q.exp() * q).sum().item()
        ce = objective(teacher, batch, step=10).terms["kd_one_best"]
        assert ce == pytest.approx(entropy, rel=5e-3, abs=5e-3)


def test_hard_targets_train_unlabelled_cuts_on_confident_hypotheses_only(generated, corpus):
    tokenizer = Tokenizer(corpus.bpe_model)
    student = tiny_teacher(tokenizer.vocab_size, seed=7)
    unlabelled = [b for b in _batches(generated, corpus, KdConfig(method="hard")) if not b["texts"][0]]
    batch = unlabelled[0]
    assert batch["targets"]["token_lens"][0] > 0, "the random teacher should hypothesise some tokens"
    score = float(batch["targets"]["hyp"]["scores"][0]) / int(batch["targets"]["frames"][0])
    kept = DistillObjective(
        _loss_config(generated), KdConfig(method="hard", min_hyp_score=score - 1), tokenizer
    )
    dropped = DistillObjective(
        _loss_config(generated), KdConfig(method="hard", min_hyp_score=score + 1), tokenizer
    )
    assert kept(student, batch, step=10).terms["pruned"] > 0
    assert dropped(student, batch, step=10).terms["pruned"] == 0


def test_a_student_trains_on_stored_targets_with_unlabelled_cuts(generated, corpus, teacher_dir, tmp_path):
    from kd.config import load_yaml
    from kd.train.config import TrainConfig
    from kd.train.trainer import Trainer, has_transcript, load_labelled_cuts

    targets = targets_cuts_path(generated.out_dir, "mixed")
    unlabelled = tmp_path / "unlabelled_targets.jsonl.gz"
    CutSet.from_cuts(c for c in CutSet.from_file(targets) if not has_transcript(c)).to_file(unlabelled)
    config = {
        "model": TINY_MODEL,
        "data": {"max_duration": 2.0, "num_buckets": 2, "spec_augment": False},
        "optim": {"lr": 0.003, "warmup_batches": 2},
        "loss": {"warm_step": 2, "prune_range": generated.manifest.config.prune_range},
        "train": {"num_epochs": 1, "num_threads": 1, "save_every_n": 0},
        "kd": {"method": "one_best", "unlabelled_rnnt": True},
        "paths": {
            "train_cuts": str(targets),
            "unlabelled_cuts": str(unlabelled),
            "valid_cuts": str(corpus.labelled),
            "bpe_model": str(corpus.bpe_model),
        },
    }
    path = tmp_path / "student.yaml"
    path.write_text(yaml.safe_dump(config))
    train_config = load_yaml(TrainConfig, path)
    cuts = training_cuts(train_config, load_labelled_cuts)
    assert sum(not c.supervisions[0].text for c in cuts) == 2 and len(cuts) == 6
    trainer = Trainer(train_config, tmp_path / "exp")
    trainer.fit()
    assert (tmp_path / "exp" / "epoch-1.pt").is_file()
    assert trainer.global_step >= 1 and trainer.skipped_batches == 0


def test_kd_config_errors_name_the_key():
    with pytest.raises(ValueError, match="kd.method"):
        KdConfig(method="distil")
    with pytest.raises(ValueError, match="kd.teacher"):
        KdConfig(method="one_best", source="online")
    assert KdConfig(method="soft_lattice").target_types == ["pruned", "hyp"]
    assert KdConfig(method="hard").target_types == ["hyp"]


def test_a_cascaded_student_distils_both_passes(generated, corpus):
    from kd.config import from_dict
    from kd.models import build_model
    from kd.models.config import ModelConfig

    tokenizer = Tokenizer(corpus.bpe_model)
    torch.manual_seed(3)
    student = build_model(from_dict(ModelConfig, {**TINY_MODEL, **_CASCADED}), tokenizer.vocab_size)
    kd = KdConfig(method="soft_lattice")
    objective = DistillObjective(_loss_config(generated), kd, tokenizer)
    batch = next(b for b in _batches(generated, corpus, kd) if b["texts"][0])
    loss = objective(student, batch, step=10)
    # The KD term is the passes' weighted sum: recompute it pass by pass.
    out = student(batch["features"], batch["feature_lens"], batch["targets"]["tokens"], prune_range=3)
    teacher = batch["targets"]["pruned"]
    from kd.losses import soft_lattice_kl
    from kd.losses.topk import TopK

    per_pass = []
    for p in (out.first_pass, out.second_pass):
        ranges = teacher["ranges"][:, : p.encoder_out.size(1)]
        logits = student.pruned_logits(p.encoder_out, p.decoder_out, ranges)
        top = TopK(teacher["logprobs"], teacher["ids"], teacher["rest"])
        per_pass.append(soft_lattice_kl(logits, top, ranges, p.encoder_out_lens, p.boundary[:, 2]).item())
    expected = 0.5 * per_pass[0] + 0.5 * per_pass[1]
    assert loss.terms["kd_soft_lattice"] == pytest.approx(expected, rel=1e-5)
    loss.total.backward()
    for part in (student.encoder.first_pass, student.encoder.second_pass):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


@pytest.mark.parametrize("cascaded", (False, True), ids=("one_pass", "cascaded"))
@pytest.mark.parametrize("method", ("none", *METHODS))
def test_every_objective_trains_under_bfloat16_autocast(generated, corpus, method, cascaded):
    """The trainer's AMP (bfloat16 autocast, on CUDA and on CPUs with native bfloat16) runs the encoder,
    decoder and joiner in bfloat16 and every loss in float32: each term stays within bfloat16's rounding
    of the float32 one, and the gradients are float32 and finite."""
    from kd.config import from_dict
    from kd.models import build_model
    from kd.models.config import ModelConfig

    tokenizer = Tokenizer(corpus.bpe_model)
    config = {**TINY_MODEL, "ctc_head": True}
    if cascaded:
        config.update(_CASCADED)
    torch.manual_seed(7)
    student = build_model(from_dict(ModelConfig, config), tokenizer.vocab_size)
    kd = KdConfig(method=method, topk=generated.manifest.config.topk, unlabelled_rnnt=True)
    loss = _loss_config(generated)
    loss.ctc_scale = 0.3
    objective = DistillObjective(loss, kd, tokenizer)
    batch = next(b for b in _batches(generated, corpus, kd) if b["texts"][0])
    exact = objective(student, batch, step=10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = objective(student, batch, step=10)
    assert mixed.total.dtype == torch.float32
    assert mixed.terms.keys() == exact.terms.keys() and "ctc" in mixed.terms
    for name in exact.terms:
        assert mixed.terms[name] == pytest.approx(exact.terms[name], rel=0.05, abs=0.05), name
    mixed.total.backward()
    for name, p in student.named_parameters():
        if p.grad is not None:
            assert p.grad.dtype == torch.float32 and bool(torch.isfinite(p.grad).all()), name
