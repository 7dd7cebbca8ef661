"""Transducer losses: k2's RNN-T loss API (full, simple, smoothed, pruned) on a built-in PyTorch
mutual-information recursion, or on k2 / fast_rnnt when one imports (kd.losses.backend), plus the lattice
helpers the KD losses share (kd.losses.lattice), and the KD losses: collapsed y/blank (collapsed), encoder
logits (encoder_logits), one-best path (one_best), soft lattice (soft_lattice), over top-k targets (topk).

    from kd.losses import rnnt_loss_simple, get_rnnt_prune_ranges, do_rnnt_pruning, rnnt_loss_pruned
"""

from kd.losses.backend import available_backends, rnnt_backend, set_rnnt_backend
from kd.losses.collapsed import collapsed_kl_full, collapsed_kl_full_chunked, collapsed_kl_pruned
from kd.losses.encoder_logits import encoder_logit_kl
from kd.losses.lattice import (
    boundary_from_lengths,
    full_node_mask,
    gather_pruned,
    lengths_from_boundary,
    log_softmax_at,
    node_logprobs,
    pruned_node_mask,
    px_py_to_nodes,
    reduce_nodes,
    scatter_pruned,
)
from kd.losses.mutual_information import mutual_information_recursion
from kd.losses.one_best import (
    gather_node_logits,
    one_best_ce,
    one_best_ce_full,
    one_best_path,
    one_best_path_from_joiner,
    shift_path,
)
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
from kd.losses.soft_lattice import soft_lattice_kl, soft_lattice_kl_full
from kd.losses.topk import (
    REST_LOG_FLOOR,
    TopK,
    fill_invalid,
    node_cross_entropy,
    node_kl,
    softmax_cross_entropy,
    softmax_kl,
    t2_factor,
    topk_cross_entropy,
    topk_from_logits,
    topk_kl,
    topk_log_probs,
)

__all__ = [
    "REST_LOG_FLOOR",
    "TopK",
    "available_backends",
    "boundary_from_lengths",
    "collapsed_kl_full",
    "collapsed_kl_full_chunked",
    "collapsed_kl_pruned",
    "do_rnnt_pruning",
    "encoder_logit_kl",
    "fill_invalid",
    "full_node_mask",
    "gather_node_logits",
    "gather_pruned",
    "get_rnnt_logprobs",
    "get_rnnt_logprobs_joint",
    "get_rnnt_logprobs_pruned",
    "get_rnnt_logprobs_smoothed",
    "get_rnnt_prune_ranges",
    "lengths_from_boundary",
    "log_softmax_at",
    "mutual_information_recursion",
    "node_cross_entropy",
    "node_kl",
    "node_logprobs",
    "one_best_ce",
    "one_best_ce_full",
    "one_best_path",
    "one_best_path_from_joiner",
    "pruned_node_mask",
    "px_py_to_nodes",
    "reduce_nodes",
    "rnnt_backend",
    "rnnt_loss",
    "rnnt_loss_pruned",
    "rnnt_loss_simple",
    "rnnt_loss_smoothed",
    "scatter_pruned",
    "set_rnnt_backend",
    "shift_path",
    "soft_lattice_kl",
    "soft_lattice_kl_full",
    "softmax_cross_entropy",
    "softmax_kl",
    "t2_factor",
    "topk_cross_entropy",
    "topk_from_logits",
    "topk_kl",
    "topk_log_probs",
]
