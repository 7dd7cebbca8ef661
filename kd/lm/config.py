"""The LM config: one YAML file per LM experiment, mapped onto :class:`LmConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The fields that shape the LM's module tree; an experiment directory keeps them for its lifetime.
MODEL_FIELDS = ("embedding_dim", "hidden_dim", "num_layers", "dropout", "tie_weights")


@dataclass
class LmConfig:
    """An LSTM token LM and how it is trained.

    Attributes:
        embedding_dim, hidden_dim, num_layers: the model's sizes.
        dropout: on the embeddings, between LSTM layers and before the output layer.
        tie_weights: the output layer shares the embedding table (needs embedding_dim == hidden_dim).
        lr: Adam's learning rate. grad_clip: max global gradient norm (0 disables clipping).
        num_epochs: epochs to train; a rerun with more continues after the newest checkpoint.
        max_tokens: padded tokens per batch, end symbols included (0: no limit).
        max_sentences: sentences per batch (0: no limit); at least one of the two limits must be set.
        seed: of the batch order and the initial weights and dropout.
        device: auto | cpu | cuda | cuda:N. num_threads: torch intra-op threads on CPU (0: torch's default).
        log_interval: batches between tensorboard/log lines.
    """

    embedding_dim: int = 512
    hidden_dim: int = 512
    num_layers: int = 2
    dropout: float = 0.1
    tie_weights: bool = True
    lr: float = 1e-3
    grad_clip: float = 5.0
    num_epochs: int = 10
    max_tokens: int = 8000
    max_sentences: int = 0
    seed: int = 42
    device: str = "auto"
    num_threads: int = 0
    log_interval: int = 50

    def __post_init__(self) -> None:
        sizes = {
            "embedding_dim": self.embedding_dim,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
        }
        bad = [f"{k}={v}" for k, v in sizes.items() if v < 1]
        if bad:
            raise ValueError(f"LM sizes must be >= 1: {', '.join(bad)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.tie_weights and self.embedding_dim != self.hidden_dim:
            raise ValueError(
                f"tie_weights needs embedding_dim == hidden_dim (got {self.embedding_dim} and "
                f"{self.hidden_dim}); make them equal or set tie_weights=false"
            )
        if self.lr <= 0 or self.grad_clip < 0:
            raise ValueError(
                f"lr must be > 0 and grad_clip >= 0, got lr={self.lr}, grad_clip={self.grad_clip}"
            )
        if self.num_epochs < 1:
            raise ValueError(f"num_epochs must be >= 1, got {self.num_epochs}")
        if self.max_tokens < 0 or self.max_sentences < 0 or not (self.max_tokens or self.max_sentences):
            raise ValueError(
                f"batches need a size: max_tokens ({self.max_tokens}) and/or max_sentences "
                f"({self.max_sentences}) > 0, neither negative"
            )
        if self.log_interval < 1:
            raise ValueError(f"log_interval must be >= 1, got {self.log_interval}")

    def model_fields(self) -> dict[str, Any]:
        """The fields of :data:`MODEL_FIELDS`, by name."""
        return {name: getattr(self, name) for name in MODEL_FIELDS}
