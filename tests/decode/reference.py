"""Slow, obviously-correct reference searches for one utterance, on the step API."""

from __future__ import annotations

import math

import torch


def _log_probs(model, enc_frame: torch.Tensor, decoder_out: torch.Tensor) -> torch.Tensor:
    """(V,) log-probs of the joiner for one raw encoder frame (D_enc,) and raw decoder output (D_dec,)."""
    return model.joiner(enc_frame, decoder_out).log_softmax(dim=-1)


def _start(module, blank_id: int):
    """Steps a fresh state of a step-API module with blank (start of sentence)."""
    return module.step(torch.tensor([blank_id]), module.init_state(1, "cpu"))


@torch.no_grad()
def reference_greedy(model, encoder_out: torch.Tensor, max_sym_per_frame: int):
    """Greedy search for one utterance, encoder_out (T, D_enc): (tokens, timestamps, score)."""
    decoder_out, state = _start(model.decoder, model.decoder.blank_id)
    tokens, timestamps, score = [], [], 0.0
    for t in range(encoder_out.size(0)):
        for _ in range(max_sym_per_frame):
            log_probs = _log_probs(model, encoder_out[t], decoder_out[0])
            best = int(log_probs.argmax())
            score += float(log_probs[best])
            if best == model.decoder.blank_id:
                break
            tokens.append(best)
            timestamps.append(t)
            decoder_out, state = model.decoder.step(torch.tensor([best]), state)
    return tokens, timestamps, score


@torch.no_grad()
def exact_sequence_scores(
    model, encoder_out: torch.Tensor, lm=None, lm_scale: float = 0.0, max_sym_per_frame: int = 1
):
    """Every alignment with at most ``max_sym_per_frame`` symbols per frame (a frame ends on blank or after
    that many symbols), enumerated depth first; returns {tokens: log-sum of the fused alignment scores}, the
    quantity modified beam search approximates. Exponential in T: keep T and V tiny."""
    blank = model.decoder.blank_id
    scores: dict[tuple[int, ...], float] = {}

    def visit(t: int, emitted: int, ys: tuple[int, ...], total: float, decoder, lm_pair) -> None:
        if t == encoder_out.size(0):
            prev = scores.get(ys, -math.inf)
            scores[ys] = max(prev, total) + math.log1p(math.exp(-abs(prev - total)))
            return
        log_probs = _log_probs(model, encoder_out[t], decoder[0][0])
        for symbol in range(model.vocab_size):
            if symbol == blank:
                visit(t + 1, 0, ys, total + float(log_probs[symbol]), decoder, lm_pair)
                continue
            fused = total + float(log_probs[symbol])
            next_lm = None
            if lm is not None:
                fused += lm_scale * float(lm_pair[0][0, symbol])
                next_lm = lm.step(torch.tensor([symbol]), lm_pair[1])
            next_decoder = model.decoder.step(torch.tensor([symbol]), decoder[1])
            if emitted + 1 == max_sym_per_frame:
                visit(t + 1, 0, ys + (symbol,), fused, next_decoder, next_lm)
            else:
                visit(t, emitted + 1, ys + (symbol,), fused, next_decoder, next_lm)

    start_lm = _start(lm, blank) if lm is not None else None
    visit(0, 0, (), 0.0, _start(model.decoder, blank), start_lm)
    return scores
