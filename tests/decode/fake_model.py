"""A tiny transducer (fake encoder and decoder, the real joiner) implementing the decoding interface.

The encoder is causal and exactly chunk-consistent: output frame i stacks feature frames [4i, 4i + 4 + P)
through a linear map and adds a squashed running sum of the earlier output frames, so a streaming forward
that carries the running sum reproduces the full forward.
"""

from __future__ import annotations

import torch
from torch import nn

from kd.models.joiner import Joiner


class FakeCausalEncoder(nn.Module):
    subsampling_factor = 4
    causal = True
    left_context_frames = -1
    streaming_pad_frames = 3

    def __init__(self, num_features: int, output_dim: int, chunk_size: int = 4) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.chunk_size = chunk_size
        self.window = self.subsampling_factor + self.streaming_pad_frames
        self.proj = nn.Linear(num_features * self.window, output_dim)

    def output_lengths(self, x_lens: torch.Tensor) -> torch.Tensor:
        return ((x_lens - self.streaming_pad_frames) // self.subsampling_factor).clamp(min=0)

    def _frames(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(1) < self.window:
            return x.new_zeros(x.size(0), 0, self.output_dim)
        stacked = x.unfold(1, self.window, self.subsampling_factor)  # (B, T', F, window)
        return self.proj(stacked.transpose(2, 3).flatten(2))

    def _mix(self, h: torch.Tensor, lens: torch.Tensor, carry: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mask = (torch.arange(h.size(1)).unsqueeze(0) < lens.unsqueeze(1)).unsqueeze(2)
        h = h * mask
        before = carry.unsqueeze(1) + torch.cumsum(h, dim=1) - h
        return (h + 0.5 * torch.tanh(before)) * mask, carry + h.sum(dim=1)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lens = self.output_lengths(x_lens)
        out, _ = self._mix(self._frames(x), lens, x.new_zeros(x.size(0), self.output_dim))
        return out, lens

    def get_init_states(self, batch_size: int, device: torch.device | str) -> torch.Tensor:
        return torch.zeros(batch_size, self.output_dim, device=device)

    def streaming_forward(
        self, x: torch.Tensor, x_lens: torch.Tensor, states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lens = self.output_lengths(x_lens)
        out, states = self._mix(self._frames(x), lens, states)
        return out, lens, states


class FakeLSTMDecoder(nn.Module):
    """Prediction network whose state (h, c) has its batch on dimension 1."""

    blank_id = 0

    def __init__(self, vocab_size: int, output_dim: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.output_dim = output_dim
        self.embed = nn.Embedding(vocab_size, output_dim)
        self.lstm = nn.LSTM(output_dim, output_dim, batch_first=True)

    def init_state(self, batch_size: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(1, batch_size, self.output_dim, device=device)
        return zeros, zeros.clone()

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        out, state = self.lstm(self.embed(tokens).unsqueeze(1), state)
        return out.squeeze(1), state

    def select_state(self, state: tuple[torch.Tensor, torch.Tensor], index: torch.Tensor):
        return state[0][:, index], state[1][:, index]


class FakeStatelessDecoder(nn.Module):
    """icefall-style stateless decoder: the state is the last ``context_size`` tokens, (N, context_size)."""

    blank_id = 0

    def __init__(self, vocab_size: int, output_dim: int, context_size: int = 2) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.output_dim = output_dim
        self.context_size = context_size
        self.embed = nn.Embedding(vocab_size, output_dim)
        self.conv = nn.Linear(context_size * output_dim, output_dim)

    def init_state(self, batch_size: int, device: torch.device | str) -> torch.Tensor:
        return torch.full((batch_size, self.context_size), self.blank_id, dtype=torch.int64, device=device)

    def step(self, tokens: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = torch.cat([state[:, 1:], tokens.unsqueeze(1)], dim=1)
        return torch.relu(self.conv(self.embed(state).flatten(1))), state

    def select_state(self, state: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return state[index]


class FakeTransducer(nn.Module):
    blank_id = 0

    def __init__(self, encoder: nn.Module, decoder: nn.Module, joiner: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder, self.joiner = encoder, decoder, joiner
        self.vocab_size = decoder.vocab_size


def make_model(
    vocab_size: int = 6,
    decoder: str = "lstm",
    num_features: int = 80,
    encoder_dim: int = 12,
    peak: float = 1.0,
    seed: int = 0,
) -> FakeTransducer:
    """A random model; ``peak`` > 1 sharpens the joiner's distributions (larger output weights) and weakens
    the decoder's influence, so the best symbol per frame barely depends on the history."""
    torch.manual_seed(seed)
    dec_cls = {"lstm": FakeLSTMDecoder, "stateless": FakeStatelessDecoder}[decoder]
    model = FakeTransducer(
        FakeCausalEncoder(num_features, encoder_dim),
        dec_cls(vocab_size, 10),
        Joiner(encoder_dim, 10, 16, vocab_size),
    )
    with torch.no_grad():
        model.joiner.output_linear.weight.mul_(3.0 * peak)
        model.joiner.decoder_proj.weight.div_(peak)
        model.joiner.decoder_proj.bias.div_(peak)
    return model.eval()


class FakeLM:
    """Bigram LM over the vocabulary with the step API; ``log_probs[a, b]`` = log P(next b | last a),
    with the blank id standing for the sentence start."""

    def __init__(self, log_probs: torch.Tensor) -> None:
        self.log_probs = log_probs

    @staticmethod
    def biased(vocab_size: int, favoured: int, seed: int = 0) -> FakeLM:
        g = torch.Generator().manual_seed(seed)
        logits = torch.randn(vocab_size, vocab_size, generator=g)
        logits[:, favoured] += 3.0
        return FakeLM(logits.log_softmax(dim=-1))

    def init_state(self, batch_size: int, device: torch.device | str) -> torch.Tensor:
        return torch.zeros(batch_size, dtype=torch.int64, device=device)

    def step(self, tokens: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.log_probs[tokens], tokens

    def select_state(self, state: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return state[index]
