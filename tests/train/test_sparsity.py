"""Gradual magnitude pruning: the cubic schedule, per-layer magnitude masks, pruned weights that stay zero
through AdamW, resume and averaging, compact storage, and sparse training runs initialised from a teacher."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kd.config import ConfigError, load_yaml
from kd.models import DecoderConfig, EncoderConfig, ModelConfig, build_model
from kd.train.checkpoint import (
    CheckpointError,
    average_state_dicts,
    load_checkpoint,
    save_checkpoint,
    select_for_averaging,
)
from kd.train.config import TrainConfig
from kd.train.optim import OptimConfig, build_optimizer
from kd.train.restore import load_trained_model
from kd.train.sparsity import (
    Pruner,
    SparsityConfig,
    apply_masks,
    is_update_step,
    load_compact_state_dict,
    masks_from_checkpoint,
    prunable_parameters,
    save_compact_state_dict,
    sparsity_at,
    sparsity_report,
)
from kd.train.trainer import Trainer

VOCAB = 13


def tiny_model(decoder_type: str = "stateless") -> nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(
        encoder=EncoderConfig(
            subsampling_channels=8,
            num_layers=1,
            d_model=32,
            num_heads=4,
            ffn_dim=64,
            conv_kernel=5,
            dropout=0.0,
        ),
        decoder=DecoderConfig(type=decoder_type, dim=24, context_size=2),
        joiner_dim=24,
    )
    return build_model(cfg, VOCAB)


def transducer_loss(model: nn.Module, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 60, 80, generator=g)
    y = [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in (4, 3)]
    out = model(x, torch.tensor([60, 52]), y, prune_range=3)
    return out.simple_loss + out.pruned_loss


def zeros(t: torch.Tensor) -> int:
    return t.numel() - int(torch.count_nonzero(t))


def test_schedule_follows_the_cubic_formula():
    cfg = SparsityConfig(
        enabled=True, initial_sparsity=0.1, final_sparsity=0.9, start_step=10, end_step=50, update_every=10
    )
    t0, n, dt, s_i, s_f = 10, 4, 10, 0.1, 0.9
    for t in [0, 5, 10, 11, 20, 25, 30, 37, 40, 49, 50, 51, 1000]:
        if t < t0:
            expected = s_i
        elif t > t0 + n * dt:
            expected = s_f
        else:
            expected = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3
        assert sparsity_at(cfg, t) == pytest.approx(expected, abs=1e-12), t
    assert sparsity_at(cfg, 30) == pytest.approx(0.8)  # half way: 0.9 - 0.8 / 8
    assert [t for t in range(0, 70) if is_update_step(cfg, t)] == [10, 20, 30, 40, 50]


@pytest.mark.parametrize(
    "fields,message",
    [
        (dict(start_step=0, end_step=25, update_every=10), "plus a positive multiple of update_every"),
        (dict(start_step=30, end_step=30), "plus a positive multiple"),
        (dict(final_sparsity=1.0), "< 1"),
        (dict(initial_sparsity=0.5, final_sparsity=0.3), "initial_sparsity \\(0.5\\) <= final_sparsity"),
        (dict(update_every=0), "update_every=0"),
        (dict(layers=[]), "sparsity.layers is empty"),
    ],
)
def test_bad_sparsity_configs_are_named(fields, message):
    with pytest.raises(ConfigError, match=message):
        SparsityConfig(**fields)


def test_default_selection_is_every_linear_and_conv_weight_of_the_inference_model():
    model = tiny_model()
    expected = {
        f"{name}.weight"
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d)
        and name.split(".")[0] in ("encoder", "decoder", "joiner")
    }
    selected = prunable_parameters(model, SparsityConfig().layers)
    assert set(selected) == expected
    assert "decoder.conv.weight" in selected and "encoder.subsampling.conv.0.weight" in selected
    assert not [n for n in selected if "simple" in n or "embedding" in n or "norm" in n or n.endswith("bias")]
    # Other tensors only when named exactly.
    named = prunable_parameters(model, ["encoder.*", "decoder.embedding.weight"])
    assert set(named) == {n for n in expected if n.startswith("encoder.")} | {"decoder.embedding.weight"}
    with pytest.raises(ValueError, match="'encoder.layer.\\*' matches no parameter"):
        prunable_parameters(model, ["encoder.layer.*"])


def test_tied_embedding_is_pruned_once_with_the_joiner_output_layer():
    model = tiny_model("tied")
    selected = prunable_parameters(model, SparsityConfig().layers)
    assert "joiner.output_linear.weight" in selected and "decoder.embedding.weight" not in selected
    pruner = Pruner(model, SparsityConfig(enabled=True, final_sparsity=0.5, end_step=1, update_every=1))
    pruner.step(1)
    assert zeros(model.decoder.embedding.weight) == round(0.5 * model.decoder.embedding.weight.numel())


def test_masks_reach_the_scheduled_sparsity_at_each_update_step():
    model = tiny_model()
    cfg = SparsityConfig(enabled=True, final_sparsity=0.9, start_step=2, end_step=10, update_every=2)
    pruner = Pruner(model, cfg)
    previous: dict[str, torch.Tensor] = {}
    for step in range(0, 13):
        with torch.no_grad():  # stands in for an optimiser step: every weight moves
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))
        before = {n: p.detach().clone() for n, p in pruner.params.items()}
        pruner.step(step)
        s = sparsity_at(cfg, step)
        for name, p in pruner.params.items():
            pruned = p == 0
            if is_update_step(cfg, step) or step == 0:
                assert int(pruned.sum()) == round(s * p.numel()), (step, name)
                newly = pruned & ~(previous.get(name, torch.zeros_like(pruned)))
                if newly.any() and (~pruned).any():
                    # Magnitude criterion: nothing kept was smaller than what was just pruned.
                    assert before[name][newly].abs().max() <= before[name][~pruned].abs().min()
            else:
                assert torch.equal(pruned, previous[name]), (step, name)
            if name in previous:
                assert bool((pruned | ~previous[name]).all()), "a pruned weight was revived"
            previous[name] = pruned
    report = sparsity_report(model)
    assert report["sparsity"] == pytest.approx(0.9, abs=0.01)
    assert report["min_sparsity"] >= 0.89 and report["max_sparsity"] <= 0.91  # per layer, not global
    assert report["nonzero"] < report["total"]


def test_pruned_weights_stay_exactly_zero_through_adamw_and_a_resume():
    model = tiny_model()
    optimizer, _ = build_optimizer(model, OptimConfig(lr=1e-2, weight_decay=0.1, betas=(0.9, 0.98)))
    cfg = SparsityConfig(enabled=True, final_sparsity=0.6, start_step=0, end_step=2, update_every=1)
    pruner = Pruner(model, cfg)
    pruner.step(0)
    revived = 0
    for step in range(1, 6):
        transducer_loss(model, step).backward()
        optimizer.step()
        optimizer.zero_grad()
        # Guard: AdamW's momentum and decay do move pruned weights; only the pruner keeps them at zero.
        revived += sum(
            int((p[~pruner.masks[n]] != 0).sum()) for n, p in pruner.params.items() if n in pruner.masks
        )
        pruner.step(step)
        for name, p in pruner.params.items():
            kept = pruner.masks[name]
            assert bool((p[~kept] == 0).all()) and not bool(torch.signbit(p[~kept]).any()), name
    assert revived > 0

    # Resume: a fresh model and pruner from the saved state continue with the same masks.
    saved = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "pruner": pruner.state_dict()}
    resumed = tiny_model()
    resumed.load_state_dict(saved["model"])
    optimizer2, _ = build_optimizer(resumed, OptimConfig(lr=1e-2, weight_decay=0.1))
    optimizer2.load_state_dict(saved["optimizer"])
    pruner2 = Pruner(resumed, cfg)
    pruner2.load_state_dict(saved["pruner"])
    assert pruner2.masks.keys() == pruner.masks.keys()
    assert all(torch.equal(pruner2.masks[n], pruner.masks[n]) for n in pruner.masks)
    for step in range(6, 9):
        transducer_loss(resumed, step).backward()
        optimizer2.step()
        optimizer2.zero_grad()
        pruner2.step(step)
    for name, p in pruner2.params.items():
        assert zeros(p) == round(0.6 * p.numel()) and torch.equal(p == 0, ~pruner.masks[name])

    other = Pruner(tiny_model(), SparsityConfig(enabled=True, layers=["encoder.*"]))
    with pytest.raises(ValueError, match="was sparsity.layers changed"):
        other.load_state_dict(saved["pruner"])


def test_averaging_revives_pruned_weights_and_the_masks_remove_them(tmp_path):
    model = tiny_model("tied")
    cfg = SparsityConfig(enabled=True, final_sparsity=0.9, start_step=0, end_step=2, update_every=1)
    pruner = Pruner(model, cfg)
    for step in (1, 2):  # 1: an intermediate sparsity, 2: the final one
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))
        pruner.step(step)
        save_checkpoint(
            tmp_path / f"epoch-{step}.pt",
            {"global_step": step, "model": model.state_dict(), "pruner": pruner.state_dict()},
        )
    averaged = average_state_dicts(select_for_averaging(tmp_path, None, 2))
    restored = tiny_model("tied")
    restored.load_state_dict(averaged)
    weights = prunable_parameters(restored, cfg.layers)
    assert sum(zeros(p) for p in weights.values()) < sum(round(0.9 * p.numel()) for p in weights.values())
    apply_masks(restored, masks_from_checkpoint(tmp_path / "epoch-2.pt"))
    for name, p in weights.items():
        assert zeros(p) == round(0.9 * p.numel()), name
    # The tied embedding is the pruned joiner output layer, not a revived copy.
    assert restored.decoder.embedding.weight is restored.joiner.output_linear.weight
    assert masks_from_checkpoint(tmp_path / "epoch-1.pt") is not None
    save_checkpoint(tmp_path / "dense.pt", {"model": restored.state_dict()})
    assert masks_from_checkpoint(tmp_path / "dense.pt") is None


def test_compact_state_dict_round_trip_is_exact_and_small(tmp_path):
    model = tiny_model("tied")
    pruner = Pruner(model, SparsityConfig(enabled=True, final_sparsity=0.9, end_step=1, update_every=1))
    pruner.step(1)
    state = model.state_dict()
    state["counter"] = torch.tensor([3, 5], dtype=torch.int64)
    state["half"] = torch.tensor([0.0, -0.0, 1.5, 0.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.bfloat16)
    state["double"] = torch.zeros(40, dtype=torch.float64)
    state["double"][7] = -0.0
    state["empty"] = torch.zeros(0, 3)
    path = tmp_path / "model.compact.pt"
    size = save_compact_state_dict(state, path)
    assert size == path.stat().st_size
    loaded = load_compact_state_dict(path)
    assert list(loaded) == list(state)
    for name, t in state.items():
        assert loaded[name].dtype == t.dtype and loaded[name].shape == t.shape, name
        if t.is_floating_point() and t.numel():
            bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
            assert torch.equal(loaded[name].view(bits), t.contiguous().view(bits)), name  # -0.0 included
        else:
            assert torch.equal(loaded[name], t), name
    assert loaded["decoder.embedding.weight"] is loaded["joiner.output_linear.weight"]

    dense = tmp_path / "model.dense.pt"
    torch.save(model.state_dict(), dense)
    compact = save_compact_state_dict(model.state_dict(), tmp_path / "pruned.compact.pt")
    ratio = compact / dense.stat().st_size
    print(
        f"compact {compact:,} bytes, dense {dense.stat().st_size:,} bytes, ratio {ratio:.3f} at 90% sparsity"
    )
    assert ratio < 0.4  # the simple projections (training only) stay dense
    with pytest.raises(CheckpointError, match="not a compact state dict"):
        load_compact_state_dict(dense)


# ---- training runs through the Trainer ------------------------------------------------------------------
# The tiny corpus gives 4 batches an epoch: with updates at 0, 2, 4 and 6 the first epoch ends at
# s_4 = 0.9 - 0.9 (1 - 4/6)^3 and the second at the final 0.9.
SPARSITY = {"enabled": True, "final_sparsity": 0.9, "start_step": 0, "end_step": 6, "update_every": 2}


@pytest.fixture(scope="module")
def teacher_exp(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("sparse")
    config = load_yaml(
        TrainConfig, tiny.config_file(root / "teacher", train={"num_epochs": 1, "save_every_n": 0})
    )
    Trainer(config, root / "teacher" / "exp").fit()
    return root / "teacher" / "exp"


def _exact_sparsity(state: dict[str, torch.Tensor], names: list[str], sparsity: float) -> bool:
    return all(zeros(state[n]) == round(sparsity * state[n].numel()) for n in names)


def test_sparse_training_from_the_teacher_resumes_and_ends_at_the_final_sparsity(tiny, tmp_path, teacher_exp):
    exp = tmp_path / "exp"

    def config(num_epochs: int) -> TrainConfig:
        cfg = load_yaml(
            TrainConfig, tiny.config_file(tmp_path, train={"num_epochs": num_epochs}, sparsity=SPARSITY)
        )
        cfg.paths.init_from = str(teacher_exp)
        return cfg

    Trainer(config(1), exp).fit()
    first = load_checkpoint(exp / "epoch-1.pt")
    names = sorted(first["pruner"]["masks"])
    s_epoch1 = 0.9 - 0.9 * (1 - 4 / 6) ** 3
    assert first["global_step"] == 4 and first["pruner"]["sparsity"] == pytest.approx(s_epoch1)
    assert _exact_sparsity(first["model"], names, s_epoch1)

    Trainer(config(2), exp).fit()  # resumes from epoch-1 with its masks
    last = load_checkpoint(exp / "epoch-2.pt")
    assert last["global_step"] == 8 and last["pruner"]["sparsity"] == pytest.approx(0.9)
    assert _exact_sparsity(last["model"], names, 0.9)
    for n in names:  # the resumed run kept epoch 1's pruned weights pruned
        assert bool(((last["model"][n] == 0) | (first["model"][n] != 0)).all()), n

    # Averaging epochs 1 and 2 revives weights; the restore path prunes them again.
    averaged = average_state_dicts([exp / "epoch-1.pt", exp / "epoch-2.pt"])
    assert not _exact_sparsity(averaged, names, 0.9)
    trained = load_trained_model(exp, avg=2)
    state = trained.model.state_dict()
    assert _exact_sparsity(state, names, 0.9)
    report = sparsity_report(trained.model)
    assert report["sparsity"] == pytest.approx(0.9, abs=0.005)
    print(f"sparse student: {report}")


def test_student_starts_from_the_teacher_weights(tiny, tmp_path, teacher_exp):
    """lr 0 freezes the run: the student is the teacher minus each tensor's smallest half."""
    path = tiny.config_file(
        tmp_path,
        optim={"lr": 0.0, "warmup_batches": 4},
        train={"num_epochs": 1, "max_batches_per_epoch": 1, "save_every_n": 0},
        sparsity={"enabled": True, "final_sparsity": 0.5, "start_step": 0, "end_step": 1, "update_every": 1},
    )
    cfg = load_yaml(TrainConfig, path)
    cfg.paths.init_from = str(teacher_exp / "epoch-1.pt")
    Trainer(cfg, tmp_path / "exp").fit()
    teacher = load_checkpoint(teacher_exp / "epoch-1.pt")["model"]
    student = load_checkpoint(tmp_path / "exp" / "epoch-1.pt")
    masks = student["pruner"]["masks"]
    for name, w in student["model"].items():
        if name not in masks:
            assert torch.equal(w, teacher[name]), name
            continue
        kept = masks[name]
        assert torch.equal(w[kept], teacher[name][kept]) and bool((w[~kept] == 0).all()), name
        assert int((~kept).sum()) == round(0.5 * w.numel())
        assert teacher[name][~kept].abs().max() <= teacher[name][kept].abs().min(), name


def test_init_from_without_checkpoints_is_a_clear_error(tiny, tmp_path):
    cfg = load_yaml(TrainConfig, tiny.config_file(tmp_path))
    cfg.paths.init_from = str(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="paths.init_from: no checkpoints"):
        Trainer(cfg, tmp_path / "exp").fit()
