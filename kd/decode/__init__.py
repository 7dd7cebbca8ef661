"""Decoding: greedy search, modified beam search (with optional LM shallow fusion), streaming greedy
search for causal models, WER scoring with icefall-style outputs, and result tables."""

from kd.decode.beam_search import modified_beam_search
from kd.decode.driver import METHODS, Search, decode_batch, decode_dataset, decode_searches
from kd.decode.greedy import GreedySearch, greedy_search_batch
from kd.decode.results import DecodingResults
from kd.decode.scoring import WerStats, compute_wer, save_results
from kd.decode.streaming import streaming_greedy_search

__all__ = [
    "METHODS",
    "DecodingResults",
    "GreedySearch",
    "Search",
    "WerStats",
    "compute_wer",
    "decode_batch",
    "decode_dataset",
    "decode_searches",
    "greedy_search_batch",
    "modified_beam_search",
    "save_results",
    "streaming_greedy_search",
]
