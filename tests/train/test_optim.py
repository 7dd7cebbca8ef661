import torch

from kd.train.optim import OptimConfig, build_optimizer


def _lrs(config: OptimConfig, batches: int, epoch: int = 0) -> list[float]:
    model = torch.nn.Linear(2, 2)
    opt, sched = build_optimizer(model, config)
    sched.set_epoch(epoch)
    out = []
    for _ in range(batches):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


def test_warmup_then_decay():
    cfg = OptimConfig(lr=1.0, warmup_batches=10, warmup_start=0.1, lr_batches=20, lr_epochs=2)
    lrs = _lrs(cfg, 60)
    assert abs(lrs[0] - 0.1) < 1e-9
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))  # rising during warm-up
    assert all(a > b for a, b in zip(lrs[11:], lrs[12:]))  # then Eden decay
    expected_50 = ((50**2 + 20**2) / 20**2) ** -0.25
    assert abs(lrs[50] - expected_50) < 1e-9
    assert _lrs(cfg, 1, epoch=2)[0] < lrs[0]  # later epochs decay too


def test_no_weight_decay_on_vectors():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    opt, _ = build_optimizer(model, OptimConfig(weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert all(p.ndim == 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert all(p.ndim == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0


def test_scheduler_state_round_trip():
    cfg = OptimConfig(lr=1.0, warmup_batches=5)
    model = torch.nn.Linear(2, 2)
    opt, sched = build_optimizer(model, cfg)
    sched.set_epoch(3)
    for _ in range(7):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2, sched2 = build_optimizer(model, cfg)
    sched2.load_state_dict(state)
    assert sched2.epoch == 3 and sched2.get_last_lr() == sched.get_last_lr()
