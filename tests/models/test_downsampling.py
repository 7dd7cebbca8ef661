"""Blocks at a lower frame rate: the bridge's arithmetic, the stacks, and an encoder that stays exact."""

from __future__ import annotations

import pytest
import torch

from kd.models import ConformerEncoder
from kd.models.downsampling import FrameRateBridge, block_stacks


def test_block_stacks_are_the_runs_of_equal_divisors():
    assert block_stacks([], 4) == [(0, 4, 1)]
    assert block_stacks([1, 1, 1], 3) == [(0, 3, 1)]
    assert block_stacks([1, 2, 4, 4, 2, 1], 6) == [(0, 1, 1), (1, 2, 2), (2, 4, 4), (4, 5, 2), (5, 6, 1)]


def test_down_is_a_weighted_mean_of_the_valid_frames_only():
    bridge = FrameRateBridge(d_model=3, factor=3)
    with torch.no_grad():
        bridge.frame_weights.copy_(torch.tensor([0.3, -1.0, 2.0]))
    h = torch.randn(2, 8, 3, dtype=torch.float64)
    lens = torch.tensor([8, 4])
    low, low_lens = bridge.down(h.float(), lens)
    assert low.shape == (2, 3, 3) and low_lens.tolist() == [3, 2]
    w = torch.softmax(bridge.frame_weights.detach().double(), 0)
    for b in range(2):
        for k in range(int(low_lens[b])):
            frames = [t for t in range(3 * k, 3 * k + 3) if t < int(lens[b])]
            expected = sum(w[t - 3 * k] * h[b, t] for t in frames) / sum(w[t - 3 * k] for t in frames)
            torch.testing.assert_close(low[b, k].double(), expected, atol=1e-6, rtol=1e-6)
    assert torch.equal(low[1, 2], torch.zeros(3))  # made of padding only


def test_up_repeats_each_frame_and_mixes_it_into_the_bypass():
    bridge = FrameRateBridge(d_model=2, factor=2)
    with torch.no_grad():
        bridge.bypass_scale.copy_(torch.tensor([0.25, 1.0]))
    low = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # (1, 2, 2)
    h = torch.zeros(1, 3, 2)
    expected = torch.tensor([[[0.25, 2.0], [0.25, 2.0], [0.75, 4.0]]])
    torch.testing.assert_close(bridge.up(low, h), expected)


def test_a_factor_below_two_is_refused():
    with pytest.raises(ValueError, match="factor >= 2"):
        FrameRateBridge(4, 1)


def test_divisors_of_one_build_the_plain_encoder(tiny_encoder_config):
    plain = ConformerEncoder(tiny_encoder_config(num_layers=3))
    ones = ConformerEncoder(tiny_encoder_config(num_layers=3, block_downsampling=[1, 1, 1]))
    assert plain.state_dict().keys() == ones.state_dict().keys()
    ones.load_state_dict(plain.state_dict())
    x, x_lens = torch.randn(2, 70, 80), torch.tensor([70, 41])
    torch.testing.assert_close(ones.eval()(x, x_lens)[0], plain.eval()(x, x_lens)[0])


def test_low_rate_blocks_by_hand(tiny_encoder_config):
    # Block 0 at 40 ms, blocks 1-2 at 80 ms, bridged: the encoder's forward is exactly this composition.
    encoder = ConformerEncoder(tiny_encoder_config(num_layers=3, block_downsampling=[1, 2, 2])).eval()
    assert list(encoder.bridges) == ["1"]
    x, x_lens = torch.randn(2, 70, 80), torch.tensor([70, 41])

    def blocks(h: torch.Tensor, lens: torch.Tensor, layers) -> torch.Tensor:
        t = h.size(1)
        frames = torch.arange(t)
        pad = frames[None, :] >= lens[:, None]
        mask = (~pad[:, None, None, :]) | torch.eye(t, dtype=torch.bool)
        for layer in layers:
            h = layer(h, frames, mask, pad)[0]
        return h

    with torch.no_grad():
        lens = encoder.output_lengths(x_lens)
        h = blocks(encoder.subsampling(x), lens, encoder.layers[:1])
        bridge = encoder.bridges["1"]
        low, low_lens = bridge.down(h, lens)
        h = bridge.up(blocks(low, low_lens, encoder.layers[1:]), h)
        expected = encoder.norm_out(h)
        out, out_lens = encoder(x, x_lens)
    assert torch.equal(out_lens, lens)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("divisors", [[2, 2], [1, 4], [3, 1]])
def test_padding_does_not_change_valid_frames(tiny_encoder_config, divisors):
    encoder = ConformerEncoder(tiny_encoder_config(block_downsampling=divisors)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(encoder.bridges[next(iter(encoder.bridges))].frame_weights)
    for length in (60, 63, 66, 71):
        x = torch.randn(1, length, 80)
        padded = torch.cat((x, 5 * torch.randn(1, 41, 80)), dim=1)
        with torch.no_grad():
            alone, n = encoder(x, torch.tensor([length]))
            batched, m = encoder(padded, torch.tensor([length]))
        assert torch.equal(n, m)
        torch.testing.assert_close(batched[:, : int(n)], alone, atol=1e-5, rtol=1e-5)


def test_the_bridge_learns(tiny_encoder_config):
    encoder = ConformerEncoder(tiny_encoder_config(block_downsampling=[1, 2])).train()
    out, _ = encoder(torch.randn(2, 50, 80), torch.tensor([50, 33]))
    out.pow(2).sum().backward()
    bridge = encoder.bridges["1"]
    assert bridge.frame_weights.grad.abs().sum() > 0 and bridge.bypass_scale.grad.abs().sum() > 0
