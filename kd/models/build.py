"""Building a transducer from its config, and counting its parameters."""

from __future__ import annotations

import torch
from torch import nn

from kd.models.cascaded import CascadedEncoder, CascadedTransducer
from kd.models.config import ModelConfig
from kd.models.conformer import ConformerEncoder
from kd.models.decoders import LSTMDecoder, StatelessDecoder, TiedReducedDecoder
from kd.models.joiner import Joiner
from kd.models.transducer import Transducer

BLANK_ID = 0


def build_decoder(config: ModelConfig, vocab_size: int) -> nn.Module:
    cfg = config.decoder
    if cfg.type == "stateless":
        return StatelessDecoder(vocab_size, cfg.dim, cfg.context_size, BLANK_ID)
    if cfg.type == "lstm":
        return LSTMDecoder(vocab_size, cfg.embedding_dim, cfg.dim, cfg.num_layers, cfg.dropout, BLANK_ID)
    return TiedReducedDecoder(vocab_size, cfg.dim, cfg.context_size, BLANK_ID)


def build_model(config: ModelConfig, vocab_size: int) -> Transducer:
    """A :class:`Transducer` with a Conformer encoder, the configured decoder and a joiner; with
    ``config.second_pass`` set, a :class:`CascadedTransducer` (causal + non-causal encoder, one decoder and
    joiner).

    For a tied decoder, its embedding table and the joiner's output layer are one tensor (V, J).
    """
    if vocab_size < 2:
        raise ValueError(f"vocab_size={vocab_size}: a transducer needs the blank and at least one token")
    second_pass = config.second_pass
    encoder = (
        ConformerEncoder(config.encoder)
        if second_pass is None
        else CascadedEncoder(config.encoder, second_pass)
    )
    decoder = build_decoder(config, vocab_size)
    joiner = Joiner(encoder.output_dim, decoder.output_dim, config.joiner_dim, vocab_size)
    if isinstance(decoder, TiedReducedDecoder):
        decoder.embedding.weight = joiner.output_linear.weight
    if second_pass is None:
        return Transducer(encoder, decoder, joiner, vocab_size, BLANK_ID, ctc_head=config.ctc_head)
    return CascadedTransducer(
        encoder,
        decoder,
        joiner,
        vocab_size,
        BLANK_ID,
        first_pass_weight=second_pass.first_pass_weight,
        second_pass_weight=second_pass.second_pass_weight,
        ctc_head=config.ctc_head,
    )


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Exact parameter counts: ``total``, one entry per top-level part (encoder, joiner, decoder,
    simple_am_proj, simple_lm_proj for a Transducer), and ``nonzero`` (non-zero entries, for sparse models).

    A tensor shared by two parts (the tied decoder's embedding) is counted once, in the part registered
    first (the joiner), so the parts sum to ``total``.
    """
    params = list(model.parameters())  # shared tensors appear once
    counts: dict[str, int] = {"total": sum(p.numel() for p in params)}
    seen: set[int] = set()
    for name, child in model.named_children():
        own = [p for p in child.parameters() if id(p) not in seen]
        seen.update(id(p) for p in own)
        counts[name] = sum(p.numel() for p in own)
    counts["nonzero"] = sum(int(torch.count_nonzero(p.detach())) for p in params)
    return counts


def format_parameter_counts(counts: dict[str, int]) -> str:
    """One line: 'total 5,123,456 (encoder 4,900,000, ...), nonzero 5,123,456'."""
    parts = ", ".join(f"{k} {v:,}" for k, v in counts.items() if k not in ("total", "nonzero"))
    return f"total {counts['total']:,} ({parts}), nonzero {counts['nonzero']:,}"
