"""Plain dynamic programmes over every lattice node, one scalar at a time, for the tests to trust.

Written from the definitions, not from kd.losses: the recursion of k2's mutual_information_recursion
docstring, and the RNN-T loss from a joiner's log-softmax (Graves 2012; the modified/constrained
topologies as k2 defines them). Autograd through these loops gives the reference gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

NEG_INF = float("-inf")


def mi_scores(px: Tensor, py: Tensor, boundary: list[list[int]] | None = None) -> Tensor:
    """(B,) log-sum over paths; px (B, S, T+1) regular or (B, S, T) modified, py (B, S+1, T)."""
    B, S, T1 = px.shape
    T = py.shape[2]
    modified = T1 == T
    scores = []
    for b in range(B):
        s0, t0, s1, t1 = boundary[b] if boundary is not None else (0, 0, S, T)
        p: dict[tuple[int, int], Tensor] = {(s0, t0): px.new_zeros(())}  # the reachable nodes
        for s in range(s0, s1 + 1):
            for t in range(t0, t1 + 1):
                terms = []
                if (s, t - 1) in p and t > t0:
                    terms.append(p[s, t - 1] + py[b, s, t - 1])
                if not modified and (s - 1, t) in p and s > s0:
                    terms.append(p[s - 1, t] + px[b, s - 1, t])
                if modified and (s - 1, t - 1) in p and s > s0 and t > t0:
                    terms.append(p[s - 1, t - 1] + px[b, s - 1, t - 1])
                _store(p, (s, t), terms)
        scores.append(p.get((s1, t1), px.new_tensor(NEG_INF)))
    return torch.stack(scores)


def rnnt_losses(
    logits: Tensor,
    symbols: Tensor,
    symbol_lens: list[int],
    frame_lens: list[int],
    rnnt_type: str = "regular",
    blank: int = 0,
    log_probs: Tensor | None = None,
) -> Tensor:
    """(B,) -log P(y | x) of a joiner output logits (B, T, U+1, V), node (t, u) = frame t, u symbols out.

    regular:     blank (t, u) -> (t+1, u); symbol y_{u+1} (t, u) -> (t, u+1); ends with the blank of
                 (T-1, U).
    modified:    blank (t, u) -> (t+1, u); symbol (t, u) -> (t+1, u+1); ends at (T, U).
    constrained: as modified, but the symbol arc also pays the blank of (t, u+1).
    log_probs: per-node log-probabilities to use instead of log_softmax(logits) (e.g. HAT's).
    """
    lp = torch.log_softmax(logits, dim=-1) if log_probs is None else log_probs
    losses = []
    for b in range(logits.shape[0]):
        T, U = frame_lens[b], symbol_lens[b]
        y = symbols[b].tolist()
        a: dict[tuple[int, int], Tensor] = {(0, 0): lp.new_zeros(())}  # the reachable nodes
        if rnnt_type == "regular":
            for t in range(T):
                for u in range(U + 1):
                    terms = []
                    if (t - 1, u) in a:
                        terms.append(a[t - 1, u] + lp[b, t - 1, u, blank])
                    if (t, u - 1) in a:
                        terms.append(a[t, u - 1] + lp[b, t, u - 1, y[u - 1]])
                    _store(a, (t, u), terms)
            end = [a[T - 1, U] + lp[b, T - 1, U, blank]] if (T - 1, U) in a else []
        else:
            for t in range(1, T + 1):
                for u in range(U + 1):
                    terms = []
                    if (t - 1, u) in a:
                        terms.append(a[t - 1, u] + lp[b, t - 1, u, blank])
                    if (t - 1, u - 1) in a:
                        arc = lp[b, t - 1, u - 1, y[u - 1]]
                        if rnnt_type == "constrained":
                            arc = arc + lp[b, t - 1, u, blank]
                        terms.append(a[t - 1, u - 1] + arc)
                    _store(a, (t, u), terms)
            end = [a[T, U]] if (T, U) in a else []
        _store(a, "end", end)
        losses.append(-a.get("end", lp.new_tensor(NEG_INF)))
    return torch.stack(losses)


def _store(nodes: dict, key: object, terms: list[Tensor]) -> None:
    """nodes[key] = log-sum of the terms that are not -inf; a node with none stays out (unreachable), so
    that autograd never differentiates a log-sum of nothing (which gives NaN)."""
    finite = [x for x in terms if x.item() != NEG_INF]
    if finite:
        nodes[key] = torch.logsumexp(torch.stack(finite), 0)


def hat_log_probs(logits: Tensor, blank: int = 0) -> Tensor:
    """HAT (Variani et al. 2020) log-probs: P(blank) = sigmoid(z_blank) and
    P(k) = (1 - sigmoid(z_blank)) * softmax over the non-blank logits."""
    blank_logp = torch.nn.functional.logsigmoid(logits[..., blank])
    others = torch.cat([logits[..., :blank], logits[..., blank + 1 :]], dim=-1)
    others = torch.log_softmax(others, dim=-1) + torch.nn.functional.logsigmoid(
        -logits[..., blank]
    ).unsqueeze(-1)
    return torch.cat([others[..., :blank], blank_logp.unsqueeze(-1), others[..., blank:]], dim=-1)
