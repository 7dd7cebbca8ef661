"""An LSTM language model over the BPE tokens, for shallow fusion in the transducer's beam search.

Token id 0, the transducer's blank, doubles as the sentence start and end symbol: the decoders and the
searches already step a fresh state with the blank id for "start of sentence", so the LM fits the same
step API (``init_state``, ``step``, ``select_state``; see kd.models.decoders) with no id translation.
A sentence ``y_1..y_U`` is scored as ``P(y_1 | 0) P(y_2 | 0, y_1) .. P(0 | 0, y_1..y_U)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kd.lm.config import LmConfig

SENTENCE_BOUNDARY = 0


class LstmLm(nn.Module):
    """Embedding -> dropout -> LSTM -> dropout -> output layer (optionally tied to the embedding).

    State of the step API: (h, c), each (num_layers, N, hidden_dim).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_dim: int,
        num_layers: int = 2,
        dropout: float = 0.1,
        tie_weights: bool = False,
    ) -> None:
        super().__init__()
        if tie_weights and embedding_dim != hidden_dim:
            raise ValueError(
                f"tie_weights needs embedding_dim == hidden_dim, got {embedding_dim} and {hidden_dim}"
            )
        self.vocab_size = vocab_size
        self.hidden_dim = hidden_dim
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
        self.output = nn.Linear(hidden_dim, vocab_size)
        if tie_weights:
            self.output.weight = self.embedding.weight

    def _logits(
        self, inputs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """inputs: (N, L) token ids. -> logits (N, L, V) in float32 or wider (half precision under autocast
        would round the log-probs), new state."""
        out, state = self.lstm(self.dropout(self.embedding(inputs)), state)
        logits = self.output(self.dropout(out))
        return logits.to(torch.promote_types(logits.dtype, torch.float32)), state

    def forward(self, tokens: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of every token of a padded batch of sentences, the end symbol included.

        Args:
            tokens: (B, U) int64 token ids; entries at or past a sentence's length are padding (any value).
            lens: (B,) int64 tokens per sentence, 0 <= lens[b] <= U.
        Returns:
            (B, U+1): entry (b, u) is -log P(y_{u+1} | start, y_1..y_u) for u < lens[b], the end symbol's
            -log P(end | start, y_1..y_U) at u = lens[b], and 0 past it; ``sum()`` is the batch's NLL.
        """
        if tokens.dim() != 2 or lens.shape != (tokens.size(0),):
            raise ValueError(
                f"tokens must be (B, U) and lens (B,), got {tuple(tokens.shape)} and {tuple(lens.shape)}"
            )
        if lens.numel() and (int(lens.min()) < 0 or int(lens.max()) > tokens.size(1)):
            raise ValueError(
                f"lens must lie in [0, {tokens.size(1)}] (the padded length), got {lens.tolist()}"
            )
        positions = torch.arange(tokens.size(1) + 1, device=tokens.device)
        # Padding becomes the boundary symbol, so the target at u = lens[b] is the end symbol.
        tokens = tokens.masked_fill(positions[:-1] >= lens[:, None], SENTENCE_BOUNDARY)
        inputs = F.pad(tokens, (1, 0), value=SENTENCE_BOUNDARY)  # (B, U+1)
        targets = F.pad(tokens, (0, 1), value=SENTENCE_BOUNDARY)  # (B, U+1)
        # A left-to-right LSTM never lets the padding after a sentence reach its valid positions.
        logits, _ = self._logits(inputs)
        nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        return nll.masked_fill(positions > lens[:, None], 0.0)

    def init_state(
        self, batch_size: int, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weight = self.output.weight
        zeros = torch.zeros(self.num_layers, batch_size, self.hidden_dim, device=device, dtype=weight.dtype)
        return zeros, zeros.clone()

    def step(
        self, tokens: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """tokens: (N,) the token just emitted (the boundary id 0 first); state: (h, c) of N rows.
        -> log-probs of the next token (N, V), new (h, c)."""
        logits, state = self._logits(tokens[:, None], state)
        return logits[:, 0].log_softmax(dim=-1), state

    @staticmethod
    def select_state(
        state: tuple[torch.Tensor, torch.Tensor], index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows ``index`` (M,) of a state: (h, c), each (num_layers, M, hidden_dim)."""
        return state[0][:, index], state[1][:, index]


def build_lm(config: LmConfig, vocab_size: int) -> LstmLm:
    """The LM of ``config`` over ``vocab_size`` tokens."""
    return LstmLm(
        vocab_size,
        config.embedding_dim,
        config.hidden_dim,
        config.num_layers,
        config.dropout,
        config.tie_weights,
    )
