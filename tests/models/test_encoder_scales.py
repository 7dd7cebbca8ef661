"""kd.bin.encoder_scales: the residual stream's RMS after the front-end and after each block."""

from __future__ import annotations

import pytest
import torch

from kd.bin.encoder_scales import residual_stream_scales
from kd.models import ConformerEncoder


def test_scales_follow_the_encoders_own_forward(tiny_encoder_config):
    encoder = ConformerEncoder(tiny_encoder_config()).eval()
    x = torch.randn(2, 90, 80) * 5 - 5
    x_lens = torch.tensor([90, 61])
    scales = residual_stream_scales(encoder, x, x_lens)
    assert [s.name for s in scales] == ["front-end"] + [f"block {i}" for i in range(len(encoder.layers))]

    # The front-end entry is the subsampling's output, the last one the stream the encoder normalises.
    with torch.no_grad():
        out, lens = encoder(x, x_lens)
        valid = torch.arange(out.size(1))[None, :] < lens[:, None]
        front = encoder.subsampling(x)[valid]
    torch.testing.assert_close(scales[0].stream_rms, float(front.pow(2).mean().sqrt()), rtol=1e-5, atol=0)
    stream = _stream(encoder, x, x_lens)
    torch.testing.assert_close(
        scales[-1].stream_rms, float(stream[valid].pow(2).mean().sqrt()), rtol=1e-5, atol=0
    )
    for before, after in zip(scales, scales[1:]):
        assert after.added_rms > 0 and before.stream_rms != after.stream_rms


def _stream(encoder: ConformerEncoder, x: torch.Tensor, x_lens: torch.Tensor) -> torch.Tensor:
    """The encoder's pre-norm output, captured with a hook on its final LayerNorm: (B, T', D)."""
    captured = []
    handle = encoder.norm_out.register_forward_hook(lambda m, inputs, output: captured.append(inputs[0]))
    with torch.no_grad():
        encoder(x, x_lens)
    handle.remove()
    return captured[0]


def test_low_rate_blocks_are_refused(tiny_encoder_config):
    encoder = ConformerEncoder(tiny_encoder_config(block_downsampling=[1, 2])).eval()
    with pytest.raises(ValueError, match="block_downsampling=\\[1, 2\\]"):
        residual_stream_scales(encoder, torch.randn(1, 40, 80), torch.tensor([40]))
