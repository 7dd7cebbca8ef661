"""Prediction networks (decoders): stateless, LSTM, tied-and-reduced.

All three share one interface:
    forward(y (B, U+1), y_lens (B,)) -> (B, U+1, output_dim)   row u = output after the first u labels
    init_state(batch_size, device) -> state
    step(tokens (N,), state) -> (decoder_out (N, output_dim), new_state)
    select_state(state, index (M,)) -> state
``y`` starts with blank_id, which stands for "start of sentence"; the first ``step`` after ``init_state``
is given blank_id for the same reason, so step-by-step outputs equal the rows of ``forward``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _ContextDecoder(nn.Module):
    """A decoder that sees only the last ``context_size`` labels; its state is those labels, (N, c - 1)."""

    def __init__(self, vocab_size: int, output_dim: int, context_size: int, blank_id: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.output_dim = output_dim
        self.context_size = context_size
        self.blank_id = blank_id

    def contexts(self, context: torch.Tensor) -> torch.Tensor:
        """(N, L + c - 1) labels, oldest first -> (N, L, D) outputs for each window of c labels."""
        raise NotImplementedError

    def forward(self, y: torch.Tensor, y_lens: torch.Tensor) -> torch.Tensor:
        """y: (B, U+1) [blank] + labels, padded; y_lens: (B,) (unused: rows only look left). -> (B, U+1, D)"""
        del y_lens  # rows past a length are padding; they never influence valid rows
        # Labels before the sentence start are blanks, exactly what init_state holds.
        return self.contexts(F.pad(y, (self.context_size - 1, 0), value=self.blank_id))

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.full(
            (batch_size, self.context_size - 1), self.blank_id, dtype=torch.int64, device=device
        )

    def step(self, tokens: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens: (N,) the label just emitted (blank_id first). state: (N, c - 1). -> (N, D), (N, c - 1)."""
        context = torch.cat((state, tokens[:, None]), dim=1)
        return self.contexts(context)[:, 0], context[:, 1:]

    @staticmethod
    def select_state(state: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return state[index]


class StatelessDecoder(_ContextDecoder):
    """icefall's stateless decoder: embedding -> depthwise Conv1d over the last c labels -> ReLU.

    The blank embedding is the zero vector (padding_idx), as in icefall.
    """

    def __init__(self, vocab_size: int, dim: int, context_size: int = 2, blank_id: int = 0) -> None:
        super().__init__(vocab_size, dim, context_size, blank_id)
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=blank_id)
        self.conv = (
            nn.Conv1d(dim, dim, kernel_size=context_size, groups=dim, bias=False)
            if context_size > 1
            else None
        )

    def contexts(self, context: torch.Tensor) -> torch.Tensor:
        h = self.embedding(context)  # (N, L + c - 1, D)
        if self.conv is not None:
            h = self.conv(h.transpose(1, 2)).transpose(1, 2)
        return F.relu(h)


class TiedReducedDecoder(_ContextDecoder):
    """Tied-and-reduced decoder (Botros et al. 2021; METHODS.md (e)).

    g_u = LayerNorm(SiLU(sum_n w_n * E[y_{u-n}] / c)) for n = 0 .. c-1, where w_n (J,) are learned
    position weights and E (V, J) is the joiner's output-layer weight: ``build_model`` assigns
    ``embedding.weight = joiner.output_linear.weight`` so both are one tensor. Initial weights w_n = 1
    make it a plain average; the LayerNorm gives the tied rows (scaled for the output layer) a stable size.
    """

    def __init__(self, vocab_size: int, dim: int, context_size: int = 2, blank_id: int = 0) -> None:
        super().__init__(vocab_size, dim, context_size, blank_id)
        self.embedding = nn.Embedding(vocab_size, dim)
        self.position_weights = nn.Parameter(torch.ones(context_size, dim))
        self.norm = nn.LayerNorm(dim)

    def contexts(self, context: torch.Tensor) -> torch.Tensor:
        emb = self.embedding(context)  # (N, L + c - 1, J)
        windows = emb.unfold(1, self.context_size, 1)  # (N, L, J, c), oldest label first
        # position_weights[0] weighs the most recent label, hence the flip.
        avg = torch.einsum("nljc,cj->nlj", windows, self.position_weights.flip(0)) / self.context_size
        return self.norm(F.silu(avg))


class LSTMDecoder(nn.Module):
    """Embedding -> dropout -> LSTM, the classic RNN-T prediction network.

    State: (h, c), each (num_layers, N, H).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_dim: int,
        num_layers: int = 1,
        dropout: float = 0.1,
        blank_id: int = 0,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.blank_id = blank_id
        self.output_dim = hidden_dim
        self.num_layers = num_layers
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            embedding_dim,
            hidden_dim,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )

    def forward(self, y: torch.Tensor, y_lens: torch.Tensor) -> torch.Tensor:
        """y: (B, U+1) [blank] + labels, padded; y_lens: (B,) (unused: the LSTM looks left). -> (B, U+1, H)"""
        del y_lens  # padding comes after every valid row, so a left-to-right LSTM needs no packing
        return self.lstm(self.dropout(self.embedding(y)))[0]

    def init_state(
        self, batch_size: int, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(self.num_layers, batch_size, self.output_dim, device=device)
        return zeros, zeros.clone()

    def step(
        self, tokens: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """tokens: (N,) the label just emitted (blank_id first). -> (N, H), new (h, c)."""
        out, new_state = self.lstm(self.dropout(self.embedding(tokens[:, None])), state)
        return out[:, 0], new_state

    @staticmethod
    def select_state(
        state: tuple[torch.Tensor, torch.Tensor], index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return state[0][:, index], state[1][:, index]
