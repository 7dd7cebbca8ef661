"""Transducer losses: k2's RNN-T loss API (full, simple, smoothed, pruned) on a built-in PyTorch
mutual-information recursion, or on k2 / fast_rnnt when one imports (kd.losses.backend), plus the lattice
helpers the KD losses share (kd.losses.lattice).

    from kd.losses import rnnt_loss_simple, get_rnnt_prune_ranges, do_rnnt_pruning, rnnt_loss_pruned
"""

from kd.losses.backend import available_backends, rnnt_backend, set_rnnt_backend
from kd.losses.lattice import (
    boundary_from_lengths,
    full_node_mask,
    gather_pruned,
    log_softmax_at,
    node_logprobs,
    pruned_node_mask,
    px_py_to_nodes,
    scatter_pruned,
)
from kd.losses.mutual_information import mutual_information_recursion
from kd.losses.rnnt import (
    do_rnnt_pruning,
    get_rnnt_logprobs,
    get_rnnt_logprobs_joint,
    get_rnnt_logprobs_pruned,
    get_rnnt_logprobs_smoothed,
    get_rnnt_prune_ranges,
    rnnt_loss,
    rnnt_loss_pruned,
    rnnt_loss_simple,
    rnnt_loss_smoothed,
)

__all__ = [
    "available_backends",
    "boundary_from_lengths",
    "do_rnnt_pruning",
    "full_node_mask",
    "gather_pruned",
    "get_rnnt_logprobs",
    "get_rnnt_logprobs_joint",
    "get_rnnt_logprobs_pruned",
    "get_rnnt_logprobs_smoothed",
    "get_rnnt_prune_ranges",
    "log_softmax_at",
    "mutual_information_recursion",
    "node_logprobs",
    "pruned_node_mask",
    "px_py_to_nodes",
    "rnnt_backend",
    "rnnt_loss",
    "rnnt_loss_pruned",
    "rnnt_loss_simple",
    "rnnt_loss_smoothed",
    "scatter_pruned",
    "set_rnnt_backend",
]
