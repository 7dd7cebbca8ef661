"""CoDERT co-learning (METHODS.md (b)): both models train while a static teacher stays fixed, the KD term
never reaches the teacher, a shared decoder is one set of tensors trained by both models, and a co-learning
run's checkpoint decodes as either model."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from lhotse import CutSet

from kd.config import ConfigError, from_dict, load_yaml, save_yaml
from kd.data.datamodule import AsrDataModule, DataConfig
from kd.data.tokenizer import Tokenizer
from kd.models import ModelConfig, Transducer, build_model
from kd.models.colearn import CoLearner, colearn_part
from kd.train.checkpoint import load_checkpoint, save_checkpoint
from kd.train.config import TrainConfig
from kd.train.distill import (
    CoLearnObjective,
    DistillObjective,
    KdConfig,
    OnlineTeacher,
    build_objective,
    training_cuts,
)
from kd.train.objective import LossConfig
from kd.train.restore import load_trained_model
from kd.train.trainer import Trainer, load_labelled_cuts

# Tiny models without dropout (deterministic forwards); the student's encoder is narrower (16 vs 32), so a
# shared decoder meets two encoder sizes.
TEACHER = {
    "encoder": {
        "subsampling_channels": 4,
        "num_layers": 1,
        "d_model": 32,
        "num_heads": 2,
        "ffn_dim": 64,
        "conv_kernel": 5,
        "dropout": 0.0,
    },
    "decoder": {"type": "stateless", "dim": 32, "context_size": 2},
    "joiner_dim": 32,
}
STUDENT = {
    **TEACHER,
    "encoder": {**TEACHER["encoder"], "d_model": 16, "ffn_dim": 32},
}
LOSS = LossConfig(warm_step=1)  # past the warm-up: simple and pruned losses at their final weights


def _colearn_kd(shared_decoder: bool = False, weight: float = 1.0) -> KdConfig:
    return KdConfig(
        method="encoder_logits",
        mode="colearn",
        shared_decoder=shared_decoder,
        teacher_model=from_dict(ModelConfig, TEACHER),
        weight=weight,
    )


def _colearner(shared_decoder: bool, seed: int = 0) -> CoLearner:
    torch.manual_seed(seed)
    return CoLearner(
        from_dict(ModelConfig, TEACHER), from_dict(ModelConfig, STUDENT), 30, shared_decoder=shared_decoder
    )


@pytest.fixture(scope="module")
def tokenizer(tiny) -> Tokenizer:
    return Tokenizer(tiny.bpe_model)


@pytest.fixture(scope="module")
def batch(tiny) -> dict:
    """Two training utterances with their transcripts."""
    cuts = CutSet.from_file(tiny.train_cuts).subset(first=2)
    return next(iter(AsrDataModule(DataConfig(max_duration=100.0)).eval_dataloader(cuts)))


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in module.named_parameters()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> dict[str, bool]:
    return {k: not torch.equal(before[k], p) for k, p in module.named_parameters()}


def _save_experiment(exp_dir, bpe_model, model_config: dict, seed: int) -> torch.nn.Module:
    """A randomly initialised transducer saved as the trainer saves the last epoch of a 1-epoch training."""
    config = from_dict(
        TrainConfig,
        {"model": model_config, "paths": {"bpe_model": str(bpe_model)}, "train": {"num_epochs": 1}},
    )
    torch.manual_seed(seed)
    model = build_model(config.model, Tokenizer(bpe_model).vocab_size)
    save_yaml(config, exp_dir / "config.yaml")
    save_checkpoint(exp_dir / "epoch-1.pt", {"model": model.state_dict(), "global_step": 1})
    return model


def test_colearning_updates_both_models(tokenizer, batch):
    model = _colearner(shared_decoder=False)
    before = _snapshot(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = CoLearnObjective(LOSS, _colearn_kd(), tokenizer)(model, batch, step=10)
    assert set(loss.terms) == {
        "teacher_simple",
        "teacher_pruned",
        "student_simple",
        "student_pruned",
        "kd_encoder_logits",
    }
    loss.total.backward()
    optimizer.step()
    changed = _changed(before, model)
    # Adam moves every tensor with a non-zero gradient: all of both models' weights are trained.
    assert all(changed[k] for k in changed if k.startswith("teacher.")), changed
    assert all(changed[k] for k in changed if k.startswith("student.")), changed


@pytest.mark.parametrize("shared_decoder", [False, True])
def test_colearning_under_bfloat16_autocast_matches_float32(tokenizer, batch, shared_decoder):
    """The trainer's AMP: both models in bfloat16, their losses and the KL in float32."""
    model = _colearner(shared_decoder)
    objective = CoLearnObjective(LOSS, _colearn_kd(shared_decoder), tokenizer)
    exact = objective(model, batch, step=10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = objective(model, batch, step=10)
    assert mixed.total.dtype == torch.float32
    for name in exact.terms:
        assert mixed.terms[name] == pytest.approx(exact.terms[name], rel=0.05, abs=0.05), name
    mixed.total.backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)


def test_a_static_teacher_never_changes(tiny, tokenizer, batch, tmp_path):
    teacher_dir = tmp_path / "teacher"
    _save_experiment(teacher_dir, tiny.bpe_model, TEACHER, seed=1)
    kd = KdConfig(method="encoder_logits", source="online", teacher=str(teacher_dir))
    online = OnlineTeacher(kd, LOSS, tokenizer, torch.device("cpu"))
    objective = DistillObjective(LOSS, kd, tokenizer, online)
    torch.manual_seed(2)
    student = build_model(from_dict(ModelConfig, STUDENT), tokenizer.vocab_size)
    teacher_before, student_before = _snapshot(online.teacher), _snapshot(student)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    loss = objective(student, batch, step=10)
    assert loss.terms["kd_encoder_logits"] > 0
    loss.total.backward()
    optimizer.step()
    assert all(p.grad is None for p in online.teacher.parameters())
    assert not any(_changed(teacher_before, online.teacher).values())
    assert all(_changed(student_before, student).values())


def _grads(model: torch.nn.Module, objective: CoLearnObjective, batch: dict) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    objective(model, batch, step=10).total.backward()
    return {
        n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()
    }


@pytest.mark.parametrize("shared_decoder", [False, True])
def test_the_kd_term_does_not_reach_the_teacher(tokenizer, batch, shared_decoder):
    model = _colearner(shared_decoder)
    with_kd = _grads(model, CoLearnObjective(LOSS, _colearn_kd(shared_decoder, 1.0), tokenizer), batch)
    without = _grads(model, CoLearnObjective(LOSS, _colearn_kd(shared_decoder, 0.0), tokenizer), batch)
    # named_parameters lists a shared tensor once, under its first (teacher.) name.
    teacher = [n for n in with_kd if n.startswith("teacher.")]
    student = [n for n in with_kd if n.startswith("student.")]
    for name in teacher:
        if shared_decoder and name.startswith("teacher.joiner.output_linear"):
            # The student's encoder logits go through the shared output layer: the KD term trains it there.
            assert not torch.equal(with_kd[name], without[name]), name
        else:
            torch.testing.assert_close(with_kd[name], without[name], rtol=1e-6, atol=1e-9, msg=name)
    assert any(not torch.equal(with_kd[n], without[n]) for n in student if n.startswith("student.encoder."))


def test_the_kd_term_is_the_encoder_logit_kl_of_student_against_teacher(tokenizer, batch):
    model = _colearner(shared_decoder=True)
    loss = CoLearnObjective(LOSS, _colearn_kd(shared_decoder=True), tokenizer)(model, batch, step=10)
    out = model(batch["features"], batch["feature_lens"], tokenizer.encode(batch["texts"]))
    with torch.no_grad():
        teacher = model.teacher.joiner.encoder_logits(out.teacher.encoder_out).double()
        student = model.student.joiner.encoder_logits(out.student.encoder_out).double()
    expected = 0.0
    for b, frames in enumerate(out.student.encoder_out_lens.tolist()):
        for t in range(frames):
            p = torch.softmax(teacher[b, t], dim=0)
            q = torch.softmax(student[b, t], dim=0)
            expected += float((p * (p.log() - q.log())).sum())
    assert expected > 0
    assert loss.terms["kd_encoder_logits"] == pytest.approx(expected, rel=1e-5)
    pruned = loss.terms["teacher_pruned"] + loss.terms["student_pruned"]
    simple = loss.terms["teacher_simple"] + loss.terms["student_simple"]
    assert loss.total.item() == pytest.approx(LOSS.simple_loss_scale * simple + pruned + expected, rel=1e-5)


def test_a_shared_decoder_is_one_tensor_trained_by_both_models(tokenizer, batch):
    model = _colearner(shared_decoder=True)
    teacher, student = model.teacher, model.student
    assert student.decoder is teacher.decoder
    assert student.simple_lm_proj is teacher.simple_lm_proj
    assert student.joiner.decoder_proj is teacher.joiner.decoder_proj
    assert student.joiner.output_linear is teacher.joiner.output_linear
    # Each encoder keeps its own projection into the joint space (encoder sizes 32 and 16).
    assert student.joiner.encoder_proj.weight.shape == (32, 16)
    assert teacher.joiner.encoder_proj.weight.shape == (32, 32)
    shared = [
        *teacher.decoder.parameters(),
        *teacher.simple_lm_proj.parameters(),
        *teacher.joiner.decoder_proj.parameters(),
        *teacher.joiner.output_linear.parameters(),
    ]
    params = list(model.parameters())
    for p in shared:
        assert sum(q is p for q in params) == 1
    numel = sum(p.numel() for p in params)
    assert numel == sum(p.numel() for p in teacher.parameters()) + sum(
        p.numel() for p in student.parameters()
    ) - sum(p.numel() for p in shared)

    out = model(batch["features"], batch["feature_lens"], tokenizer.encode(batch["texts"]))
    losses = {
        name: part.simple_loss + part.pruned_loss for name, part in (("T", out.teacher), ("S", out.student))
    }
    grads = {name: torch.autograd.grad(loss, shared, retain_graph=True) for name, loss in losses.items()}
    (losses["T"] + losses["S"]).backward()
    for i, p in enumerate(shared):
        g_teacher, g_student = grads["T"][i], grads["S"][i]
        assert g_teacher.abs().sum() > 0 and g_student.abs().sum() > 0
        assert not torch.allclose(g_teacher, g_student)
        torch.testing.assert_close(p.grad, g_teacher + g_student)


def test_without_a_shared_decoder_the_models_are_apart():
    model = _colearner(shared_decoder=False)
    assert model.student.decoder is not model.teacher.decoder
    assert model.student.joiner.output_linear is not model.teacher.joiner.output_linear
    teacher_ids = {id(p) for p in model.teacher.parameters()}
    assert not any(id(p) in teacher_ids for p in model.student.parameters())


def test_a_shared_decoder_needs_one_decoder_config():
    other = from_dict(ModelConfig, {**STUDENT, "decoder": {"type": "stateless", "dim": 16}})
    with pytest.raises(ValueError, match="kd.teacher_model.decoder"):
        CoLearner(from_dict(ModelConfig, TEACHER), other, 30, shared_decoder=True)


def test_kd_config_colearn_errors_name_the_keys():
    teacher = from_dict(ModelConfig, TEACHER)
    with pytest.raises(ValueError, match="kd.mode"):
        KdConfig(method="encoder_logits", mode="tandem")
    with pytest.raises(ValueError, match="kd.method: encoder_logits"):
        KdConfig(method="collapsed", mode="colearn", teacher_model=teacher)
    with pytest.raises(ValueError, match="kd.teacher_model"):
        KdConfig(method="encoder_logits", mode="colearn")
    with pytest.raises(ValueError, match="kd.shared_decoder"):
        KdConfig(method="encoder_logits", shared_decoder=True)
    with pytest.raises(ValueError, match="kd.teacher_model"):
        KdConfig(method="encoder_logits", teacher_model=teacher)
    with pytest.raises(ValueError, match="kd.source"):
        KdConfig(
            method="encoder_logits", mode="colearn", teacher_model=teacher, source="online", teacher="exp/t"
        )
    assert _colearn_kd().target_types == []


def test_a_colearning_run_checkpoints_both_models_and_decodes_either(tiny, tmp_path, monkeypatch):
    kd = {"method": "encoder_logits", "mode": "colearn", "shared_decoder": True, "teacher_model": TEACHER}
    path = tiny.config_file(
        tmp_path,
        model=STUDENT,
        kd=kd,
        train={"num_epochs": 1, "save_every_n": 0, "max_batches_per_epoch": 2},
    )
    config = load_yaml(TrainConfig, path)
    assert config.kd.teacher_model == from_dict(ModelConfig, TEACHER)
    objective, targets = build_objective(config, Tokenizer(tiny.bpe_model), torch.device("cpu"))
    assert isinstance(objective, CoLearnObjective) and targets is None
    exp = tmp_path / "exp"
    trainer = Trainer(config, exp)
    trainer.fit()
    assert trainer.global_step == 2 and trainer.skipped_batches == 0
    state = load_checkpoint(exp / "epoch-1.pt")["model"]
    assert {k.split(".")[0] for k in state} == {"teacher", "student"}

    for part in ("teacher", "student"):
        trained = load_trained_model(exp, part=part)
        assert type(trained.model) is Transducer and not trained.model.training
        for name, value in trained.model.state_dict().items():
            torch.testing.assert_close(value, state[f"{part}.{name}"])
    student = load_trained_model(exp).model
    assert student.encoder.output_dim == 16 and student.decoder is not None
    assert load_trained_model(exp, part="teacher").model.encoder.output_dim == 32

    from kd.bin import decode

    for part in ("teacher", "student"):
        argv = ["decode", "--exp-dir", str(exp), "--cuts", str(tiny.valid_cuts), "--part", part]
        monkeypatch.setattr(sys, "argv", [*argv, "--device", "cpu"])
        decode.main()
    teacher = json.loads((exp / "wer-dev-teacher_greedy_search.json").read_text())
    student = json.loads((exp / "wer-dev-greedy_search.json").read_text())
    assert teacher["model"]["part"] == "teacher" and student["model"]["part"] == "student"
    assert teacher["num_utts"] == student["num_utts"] > 0
    assert teacher["model"]["num_params"] > student["model"]["num_params"]


def test_only_a_colearning_experiment_has_a_teacher_part(tiny, tmp_path):
    exp = tmp_path / "exp"
    model = _save_experiment(exp, tiny.bpe_model, STUDENT, seed=3)
    restored = load_trained_model(exp, part="student").model
    torch.testing.assert_close(restored.state_dict(), model.state_dict())
    with pytest.raises(ConfigError, match="part='teacher'"):
        load_trained_model(exp, part="teacher")
    with pytest.raises(ValueError, match="part='coach'"):
        colearn_part(model, "coach")


def test_colearning_uses_no_unlabelled_cuts(tiny, tmp_path):
    kd = {"method": "encoder_logits", "mode": "colearn", "teacher_model": TEACHER}
    config = load_yaml(TrainConfig, tiny.config_file(tmp_path, kd=kd))
    config.paths.unlabelled_cuts = str(tiny.train_cuts)
    with pytest.raises(ValueError, match="paths.unlabelled_cuts"):
        training_cuts(config, load_labelled_cuts)
