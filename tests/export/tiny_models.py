"""Random tiny transducers whose joiner is decisive enough to emit a mix of blanks and tokens."""

from __future__ import annotations

import torch

from kd.models import DecoderConfig, EncoderConfig, ModelConfig, SecondPassConfig, Transducer, build_model

VOCAB_SIZE = 30
CHUNK_SIZE = 4
LEFT_CONTEXT = 8


def make_model(
    decoder: str = "stateless",
    causal: bool = False,
    left_context_frames: int = LEFT_CONTEXT,
    vocab_size: int = VOCAB_SIZE,
    cascaded: bool = False,
    seed: int = 0,
    block_downsampling: tuple[int, ...] = (),
) -> Transducer:
    """A random tiny transducer in eval mode; the joiner's output layer is scaled so that the searches see
    peaked distributions and emit tokens on some frames and blanks on others.

    ``cascaded``: a two-pass model (its first pass causal, whatever ``causal`` says) with a one-block
    second pass of another width than the first. ``block_downsampling``: the encoder's per-block frame-rate
    divisors (two blocks).
    """
    torch.manual_seed(seed)
    causal = causal or cascaded
    second_pass = SecondPassConfig(
        num_layers=1, d_model=16, num_heads=2, ffn_dim=32, conv_kernel=3, dropout=0.0
    )
    config = ModelConfig(
        encoder=EncoderConfig(
            subsampling_channels=8,
            num_layers=2,
            d_model=32,
            num_heads=4,
            ffn_dim=64,
            conv_kernel=5,
            dropout=0.0,
            causal=causal,
            chunk_size=CHUNK_SIZE if causal else -1,
            left_context_frames=left_context_frames if causal else -1,
            block_downsampling=list(block_downsampling),
        ),
        decoder=DecoderConfig(type=decoder, dim=24, context_size=2, embedding_dim=16, dropout=0.0),
        joiner_dim=24,
        second_pass=second_pass if cascaded else None,
    )
    model = build_model(config, vocab_size).eval()
    with torch.no_grad():
        model.joiner.encoder_proj.weight.mul_(4.0)
        model.joiner.output_linear.weight.mul_(3.0)
        model.joiner.output_linear.bias[model.blank_id] = 2.5
    return model
