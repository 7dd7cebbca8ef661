"""Conformer encoder: shapes, lengths, masks, streaming == chunked forward, causality, padding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kd.models import ConformerEncoder, chunk_attention_mask, subsampled_lengths


def stream(encoder: ConformerEncoder, x: torch.Tensor, x_lens: torch.Tensor) -> torch.Tensor:
    """Runs ``x`` through streaming_forward in icefall-style overlapping windows; returns (B, T', D)."""
    hop = encoder.chunk_size * encoder.subsampling_factor
    window = hop + encoder.streaming_pad_frames
    states = encoder.get_init_states(x.size(0))
    outs = []
    for start in range(0, x.size(1) - encoder.streaming_pad_frames, hop):
        chunk = x[:, start : start + window]
        chunk = F.pad(chunk, (0, 0, 0, window - chunk.size(1)))
        lens = (x_lens - start).clamp(min=0, max=window)
        out, out_lens, states = encoder.streaming_forward(chunk, lens, states)
        assert out.size(1) == encoder.chunk_size
        assert torch.equal(out_lens, encoder.output_lengths(lens).clamp(max=encoder.chunk_size))
        outs.append(out)
    return torch.cat(outs, dim=1)


def test_output_lengths_match_the_subsampling_receptive_field():
    # Output frame k reads input frames 4k .. 4k+6, so T frames give #{k : 4k + 6 <= T - 1} outputs.
    lens = torch.arange(0, 60)
    expected = torch.tensor([sum(1 for k in range(t) if 4 * k + 6 <= t - 1) for t in range(60)])
    assert torch.equal(subsampled_lengths(lens), expected)


def test_forward_shapes_and_lengths(tiny_encoder_config):
    encoder = ConformerEncoder(tiny_encoder_config()).eval()
    x = torch.randn(3, 101, 80)
    x_lens = torch.tensor([101, 57, 7])
    out, out_lens = encoder(x, x_lens)
    assert out.shape == (3, int(encoder.output_lengths(torch.tensor([101]))), 32)
    assert torch.equal(out_lens, encoder.output_lengths(x_lens))
    assert out_lens.tolist() == [24, 13, 1]
    assert encoder.output_dim == 32 and encoder.subsampling_factor == 4
    assert torch.isfinite(out).all()


def test_frontend_norm_bounds_the_subsampling_output(tiny_encoder_config):
    # Fbank-like input (mean -5, std 5) with the first conv's weights grown as training grows them: the
    # plain front-end passes the scale on to the residual stream, the normalised one gives unit RMS frames.
    x = torch.randn(2, 60, 80) * 5 - 5
    scales = {}
    for norm in (False, True):
        encoder = ConformerEncoder(tiny_encoder_config(frontend_norm=norm))
        with torch.no_grad():
            encoder.subsampling.conv[0].weight.mul_(20.0)
            scales[norm] = encoder.subsampling(x).pow(2).mean(-1).sqrt()  # (B, T') RMS per frame
    assert scales[False].min() > 5.0
    torch.testing.assert_close(scales[True], torch.ones_like(scales[True]), atol=1e-3, rtol=0)


def test_too_short_input_is_a_clear_error(tiny_encoder_config):
    encoder = ConformerEncoder(tiny_encoder_config())
    with pytest.raises(ValueError, match="at least 7"):
        encoder(torch.randn(1, 6, 80), torch.tensor([6]))


def test_chunk_mask_matches_its_definition():
    t, chunk, left = 11, 3, 4
    mask = chunk_attention_mask(t, chunk, left)
    for q in range(t):
        c = q // chunk
        for k in range(t):
            assert mask[q, k] == (c * chunk - left <= k < (c + 1) * chunk)
    assert chunk_attention_mask(t, -1, left) is None
    assert chunk_attention_mask(t, chunk, -1)[10].all()  # all history: the last chunk sees everything


@pytest.mark.parametrize(
    "chunk_size,left_context,frontend_norm", [(4, 6, False), (3, -1, False), (5, 0, False), (2, 3, True)]
)
def test_streaming_equals_chunked_forward(tiny_encoder_config, chunk_size, left_context, frontend_norm):
    cfg = tiny_encoder_config(
        causal=True, chunk_size=chunk_size, left_context_frames=left_context, frontend_norm=frontend_norm
    )
    encoder = ConformerEncoder(cfg).eval()
    x = torch.randn(3, 150, 80)
    x_lens = torch.tensor([150, 121, 90])
    with torch.no_grad():
        full, full_lens = encoder(x, x_lens)
        streamed = stream(encoder, x, x_lens)
    for b, n in enumerate(full_lens.tolist()):
        torch.testing.assert_close(streamed[b, :n], full[b, :n], atol=1e-5, rtol=1e-5)


def test_streaming_differs_from_full_context(tiny_encoder_config):
    # Guards the test above: chunking must change the output, or the equality proves nothing.
    encoder = ConformerEncoder(tiny_encoder_config(causal=True, chunk_size=4, left_context_frames=2)).eval()
    x, x_lens = torch.randn(1, 80, 80), torch.tensor([80])
    with torch.no_grad():
        chunked = encoder(x, x_lens)[0]
        full = encoder(x, x_lens, chunk_size=-1, left_context_frames=-1)[0]
    assert (chunked - full).abs().max() > 1e-3


def test_causal_output_ignores_inputs_after_its_chunk(tiny_encoder_config):
    chunk = 4
    encoder = ConformerEncoder(
        tiny_encoder_config(causal=True, chunk_size=chunk, left_context_frames=-1)
    ).eval()
    x = torch.randn(1, 120, 80)
    x_lens = torch.tensor([120])
    c = 2  # chunk index; its last output frame reads input frames up to 4 * (3 * chunk - 1) + 6
    first_unseen = 4 * ((c + 1) * chunk - 1) + 7
    y = x.clone()
    y[:, first_unseen:] = torch.randn_like(y[:, first_unseen:])
    with torch.no_grad():
        a = encoder(x, x_lens)[0]
        b = encoder(y, x_lens)[0]
    end = (c + 1) * chunk
    torch.testing.assert_close(a[:, :end], b[:, :end], atol=1e-6, rtol=0)
    assert (a[:, end:] - b[:, end:]).abs().max() > 1e-3
    # One frame earlier is read by chunk c, so changing it must change that chunk.
    y[:, first_unseen - 1] += 1.0
    with torch.no_grad():
        b = encoder(y, x_lens)[0]
    assert (a[:, c * chunk : end] - b[:, c * chunk : end]).abs().max() > 1e-4


@pytest.mark.parametrize("causal", [False, True])
def test_padding_does_not_change_valid_frames(tiny_encoder_config, causal):
    overrides = dict(causal=True, chunk_size=4, left_context_frames=8) if causal else {}
    encoder = ConformerEncoder(tiny_encoder_config(**overrides)).eval()
    x = torch.randn(1, 60, 80)
    padded = torch.cat((x, 5 * torch.randn(1, 40, 80)), dim=1)
    with torch.no_grad():
        alone, n = encoder(x, torch.tensor([60]))
        batched, m = encoder(padded, torch.tensor([60]))
    assert torch.equal(n, m)
    torch.testing.assert_close(batched[:, : int(n)], alone, atol=1e-5, rtol=1e-5)


def test_dynamic_chunk_training_draws_from_the_configured_lists(tiny_encoder_config):
    cfg = tiny_encoder_config(
        causal=True,
        chunk_size=4,
        left_context_frames=8,
        dynamic_chunk_training=True,
        dynamic_chunk_sizes=[2, -1],
        dynamic_left_context_frames=[0, 5],
    )
    encoder = ConformerEncoder(cfg)
    seen = {encoder._chunking() for _ in range(64)}
    assert seen == {(2, 0), (2, 5), (-1, 0), (-1, 5)}
    encoder.eval()
    assert encoder._chunking() == (4, 8)


def test_streaming_needs_a_causal_encoder(tiny_encoder_config):
    encoder = ConformerEncoder(tiny_encoder_config())
    with pytest.raises(RuntimeError, match="causal"):
        encoder.get_init_states(1)
    with pytest.raises(ValueError, match="causal"):
        encoder(torch.randn(1, 30, 80), torch.tensor([30]), chunk_size=2)


def test_layer_warmup_mixes_each_block_with_its_input_in_training_only(tiny_encoder_config):
    encoder = ConformerEncoder(tiny_encoder_config(num_layers=3)).train()
    x, x_lens = torch.randn(2, 60, 80), torch.tensor([60, 45])

    def by_hand(alpha: float) -> torch.Tensor:
        h = encoder.subsampling(x)
        t = h.size(1)
        frames = torch.arange(t)
        lens = encoder.output_lengths(x_lens)
        pad = frames[None, :] >= lens[:, None]
        mask = (~pad[:, None, None, :]) | torch.eye(t, dtype=torch.bool)
        for layer in encoder.layers:
            h = alpha * layer(h, frames, mask, pad)[0] + (1 - alpha) * h
        return encoder.norm_out(h)

    torch.testing.assert_close(encoder(x, x_lens, warmup=0.0)[0], by_hand(0.1))
    torch.testing.assert_close(encoder(x, x_lens, warmup=0.5)[0], by_hand(0.55))
    torch.testing.assert_close(encoder(x, x_lens, warmup=2.0)[0], by_hand(1.0))
    encoder.eval()
    torch.testing.assert_close(encoder(x, x_lens, warmup=0.0)[0], encoder(x, x_lens)[0])
    assert not torch.allclose(encoder(x, x_lens)[0], encoder.train()(x, x_lens, warmup=0.0)[0])
