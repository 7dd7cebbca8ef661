"""The joint network: z = W_o tanh(W_e h + W_d g)."""

from __future__ import annotations

import torch
from torch import nn


class Joiner(nn.Module):
    """encoder_proj (D_enc -> J), decoder_proj (D_dec -> J), output_linear (J -> V)."""

    def __init__(self, encoder_dim: int, decoder_dim: int, joiner_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.encoder_proj = nn.Linear(encoder_dim, joiner_dim)
        self.decoder_proj = nn.Linear(decoder_dim, joiner_dim)
        self.output_linear = nn.Linear(joiner_dim, vocab_size)

    def forward(
        self, encoder_out: torch.Tensor, decoder_out: torch.Tensor, project_input: bool = True
    ) -> torch.Tensor:
        """Logits output_linear(tanh(enc + dec)).

        Args:
            encoder_out: (..., D_enc), or (..., J) already projected when project_input is False.
            decoder_out: (..., D_dec), or (..., J) already projected; broadcastable against encoder_out
                (e.g. (B, T, 1, J) and (B, 1, U+1, J) give the full lattice (B, T, U+1, V)).
            project_input: apply encoder_proj / decoder_proj first (False when decoding caches them).
        Returns:
            (..., V) logits.
        """
        if project_input:
            encoder_out = self.encoder_proj(encoder_out)
            decoder_out = self.decoder_proj(decoder_out)
        return self.output_linear(torch.tanh(encoder_out + decoder_out))

    def encoder_logits(self, encoder_out: torch.Tensor) -> torch.Tensor:
        """CoDERT's encoder logits (METHODS.md (b)): (B, T, D_enc) -> (B, T, V), the decoder term zero."""
        return self.output_linear(torch.tanh(self.encoder_proj(encoder_out)))
