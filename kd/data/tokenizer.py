"""Sentencepiece BPE tokenizer with the transducer's conventions.

The model reserves id 0 for the transducer blank (``<blk>``), id 1 for ``<sos/eos>`` and id 2 for
``<unk>``, as icefall's ``lang_bpe_*`` models do, and has no BOS/EOS ids of its own. The model type
defaults to unigram, which icefall uses for its LibriSpeech ``lang_bpe_500`` models.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from kd.data.errors import MissingFileError, TranscriptError

log = logging.getLogger(__name__)

BLANK = "<blk>"
SOS_EOS = "<sos/eos>"
UNK = "<unk>"
_SPECIAL = (BLANK, SOS_EOS)
_WORD_BOUNDARY = "\u2581"  # sentencepiece's "▁", marking a piece that starts a word


class TokenizerError(TranscriptError):
    """A transcript with characters the tokenizer cannot represent, or an unusable model."""


class Tokenizer:
    """Maps transcripts to token ids and back with a sentencepiece model.

    Attributes:
        vocab_size: number of token ids, including blank, ``<sos/eos>`` and ``<unk>``.
        blank_id: 0.
        unk_id: the id of ``<unk>``, which the encoder emits for characters outside the model.
    """

    def __init__(self, model_path: str | Path) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise MissingFileError(
                f"{self.model_path}: BPE model not found; train it with `python -m kd.bin.train_bpe`"
            )
        self.sp = spm.SentencePieceProcessor(model_file=str(self.model_path))
        if self.sp.id_to_piece(0) != BLANK:
            raise TokenizerError(
                f"{self.model_path}: token 0 is {self.sp.id_to_piece(0)!r}, not the blank {BLANK!r}; "
                "retrain the model with `python -m kd.bin.train_bpe`"
            )
        self.vocab_size: int = self.sp.get_piece_size()
        self.blank_id: int = 0
        self.unk_id: int = self.sp.unk_id()
        self._chars = {
            ch
            for i in range(self.vocab_size)
            if not (self.sp.is_control(i) or self.sp.is_unknown(i) or self.sp.id_to_piece(i) in _SPECIAL)
            for ch in self.sp.id_to_piece(i)
        } - {_WORD_BOUNDARY}

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text (no blank, no BOS/EOS)."""
        return self.sp.encode(texts, out_type=int)

    def decode(self, ids: list[int]) -> str:
        """The text of one token sequence; blank ids are dropped."""
        return self.sp.decode([i for i in ids if i != self.blank_id])

    def unknown_chars(self, text: str) -> set[str]:
        """Characters of ``text`` (other than spaces) that no token of the model contains."""
        return {ch for ch in text if not ch.isspace() and ch not in self._chars}

    def check(self, texts: Iterable[tuple[str, str]]) -> None:
        """Raises when any ``(utterance_id, text)`` has characters the model cannot represent.

        Raises:
            TokenizerError: naming the utterances (up to five) and their unknown characters.
        """
        bad = [(utt, sorted(chars)) for utt, text in texts if (chars := self.unknown_chars(text))]
        if bad:
            shown = "; ".join(f"{utt}: {''.join(chars)!r}" for utt, chars in bad[:5])
            raise TokenizerError(
                f"{len(bad)} utterance(s) have characters outside the BPE model {self.model_path}: {shown}. "
                "Normalise the transcripts as the training text was (e.g. upper case, no punctuation), "
                "or retrain the BPE model on text that contains these characters"
            )


def train_bpe(
    texts: Iterable[str],
    vocab_size: int,
    output_dir: str | Path,
    model_type: str = "unigram",
    force: bool = False,
) -> Path:
    """Trains ``<output_dir>/bpe.model`` (and ``bpe.vocab``) on ``texts``; writes them to
    ``transcript_words.txt`` too. An existing model is kept unless ``force``. Returns the model path.

    Raises:
        TranscriptError: no non-empty text.
        TokenizerError: sentencepiece cannot build ``vocab_size`` pieces from this text.
    """
    output_dir = Path(output_dir)
    model = output_dir / "bpe.model"
    if model.is_file() and not force:
        log.info("%s exists, skipping BPE training", model)
        return model
    lines = [t.strip() for t in texts if t and t.strip()]
    if not lines:
        raise TranscriptError("no transcripts to train the BPE model on (all cuts are unlabelled or empty)")
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir) as tmp:
        transcripts = Path(tmp) / "transcript_words.txt"
        transcripts.write_text("\n".join(lines) + "\n")
        try:
            spm.SentencePieceTrainer.train(
                input=str(transcripts),
                model_prefix=str(Path(tmp) / "bpe"),
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=1.0,
                input_sentence_size=100_000_000,
                user_defined_symbols=list(_SPECIAL),
                unk_id=len(_SPECIAL),
                bos_id=-1,
                eos_id=-1,
                minloglevel=1,
            )
        except RuntimeError as e:
            raise TokenizerError(
                f"sentencepiece cannot train a {vocab_size}-token {model_type} model "
                f"on {len(lines)} transcripts "
                f"({e}); lower --vocab-size"
            ) from e
        # The model goes last: its presence marks the whole directory as complete.
        for name in ("transcript_words.txt", "bpe.vocab", "bpe.model"):
            shutil.move(Path(tmp) / name, output_dir / name)
    log.info("%s: %d tokens from %d transcripts", model, vocab_size, len(lines))
    return model
