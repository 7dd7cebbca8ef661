"""What an exported model says about itself: the facts a runtime needs, stored as ONNX metadata.

Every exported file carries the same :class:`ExportMetadata` in its ``metadata_props`` (sherpa-onnx reads
its facts the same way), each value JSON-encoded so that types survive the string-to-string map. The
tokenizer is identified by the sha256 of its sentencepiece model file: a runtime given another BPE model
refuses it even when the vocabulary sizes agree, since the ids would then spell other words.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_TYPE = "rnnt-kd-transducer"
FORMAT_VERSION = 1
_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (int, float),
    "str": str,
    "bool": bool,
}


@dataclass(frozen=True)
class ExportMetadata:
    """Facts of an exported transducer.

    Attributes:
        vocab_size: V, the joiner's output size (blank included).
        blank_id: the blank's token id (0).
        feature_dim: F, fbank bins of the encoder input.
        sampling_rate: audio sampling rate (Hz) the features are computed at.
        frame_shift: seconds per feature frame.
        subsampling_factor: feature frames per encoder frame.
        encoder_out_dim: J, the size of the (projected) encoder and decoder outputs the joiner adds.
        decoder_type: ``stateless`` / ``tied`` (the decoder reads the last ``context_size`` labels) or
            ``lstm`` (it reads the last label and carries (h, c)).
        context_size: labels the decoder reads per step (1 for ``lstm``).
        streaming: there is a streaming encoder graph (a causal encoder, or a cascaded model's first pass).
        cascaded: a two-pass model: the encoder graph is its second (final) pass, the streaming encoder
            its first.
        chunk_size: encoder frames per streaming chunk (-1: full context, no streaming).
        left_context_frames: encoder frames of attention history (-1: all history).
        streaming_pad_frames: feature frames a streaming window reads past its hop (the subsampling's right
            context): windows are ``chunk_size * subsampling_factor + streaming_pad_frames`` frames long.
        tokenizer_sha256: sha256 of the sentencepiece model file the model was trained with.
        nonzero_fraction: share of non-zero weights in the exported model (sparse students: well below 1).
        opset: the ai.onnx opset of the graphs.
        source: where the weights came from (experiment directory, epoch, averaged checkpoints).
    """

    vocab_size: int
    blank_id: int
    feature_dim: int
    sampling_rate: int
    frame_shift: float
    subsampling_factor: int
    encoder_out_dim: int
    decoder_type: str
    context_size: int
    streaming: bool
    cascaded: bool
    chunk_size: int
    left_context_frames: int
    streaming_pad_frames: int
    tokenizer_sha256: str
    nonzero_fraction: float
    opset: int
    source: str

    def to_props(self) -> dict[str, str]:
        """The ONNX ``metadata_props`` map: every field JSON-encoded, plus model type and format version."""
        props = {"model_type": MODEL_TYPE, "format_version": str(FORMAT_VERSION)}
        props.update({k: json.dumps(v) for k, v in dataclasses.asdict(self).items()})
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], where: str) -> ExportMetadata:
        """Parses :meth:`to_props`' map read back from the model file ``where``.

        Raises:
            ValueError: the file was not written by ``kd.bin.export`` (this version), or a value is missing
                or of the wrong type; the message names the file and the key.
        """
        if props.get("model_type") != MODEL_TYPE or props.get("format_version") != str(FORMAT_VERSION):
            raise ValueError(
                f"{where}: metadata model_type={props.get('model_type')!r}, "
                f"format_version={props.get('format_version')!r}; expected {MODEL_TYPE!r} version "
                f"{FORMAT_VERSION}: export the model with `python -m kd.bin.export`"
            )
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in props:
                raise ValueError(f"{where}: metadata lacks {f.name!r}; re-export the model")
            value = json.loads(props[f.name])
            # Annotations are strings here (postponed evaluation); JSON writes 0.5 but also 1 for a float.
            accepted = _JSON_TYPES[f.type]
            if isinstance(value, bool) != (f.type == "bool") or not isinstance(value, accepted):
                raise ValueError(f"{where}: metadata {f.name}={value!r} is not of type {f.type}")
            values[f.name] = value
        return cls(**values)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_tokenizer(
    metadata: ExportMetadata, model_dir: str | Path, bpe_model: str | Path, vocab_size: int
) -> None:
    """Refuses a tokenizer other than the one the exported model was trained with.

    Args:
        metadata: the exported model's.
        model_dir: where the model was read from (for the message).
        bpe_model: the sentencepiece model given for decoding.
        vocab_size: its number of tokens.
    Raises:
        ValueError: naming both the model and the tokenizer, with both vocabulary sizes and hashes.
    """
    sha = file_sha256(bpe_model)
    if metadata.vocab_size != vocab_size or metadata.tokenizer_sha256 != sha:
        raise ValueError(
            f"the model in {model_dir} was exported with a tokenizer of {metadata.vocab_size} tokens "
            f"(sha256 {metadata.tokenizer_sha256[:16]}...), but the BPE model {bpe_model} has {vocab_size} "
            f"tokens (sha256 {sha[:16]}...): decode with the BPE model the model was trained with"
        )
