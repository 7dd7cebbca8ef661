"""A small LSTM language model over the BPE tokens: trained on the training transcripts
(``python -m kd.bin.train_lm``) and fused shallowly into modified beam search, for decoding and for the
teacher's hypotheses on unlabelled audio (METHODS.md (c)).

Modules: ``config`` (sizes and training settings), ``model`` (the LM, with the decoders' step API),
``data`` (transcripts as batched token sequences), ``train`` (the resumable training loop), ``restore``
(loading a trained LM, checked against the transducer's tokenizer).
"""

from kd.lm.config import LmConfig
from kd.lm.model import SENTENCE_BOUNDARY, LstmLm, build_lm
from kd.lm.restore import lm_checkpoint, load_lm
from kd.lm.train import LmTrainer, perplexity

__all__ = [
    "SENTENCE_BOUNDARY",
    "LmConfig",
    "LmTrainer",
    "LstmLm",
    "build_lm",
    "lm_checkpoint",
    "load_lm",
    "perplexity",
]
