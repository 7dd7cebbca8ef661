"""An exported transducer run by onnxruntime: numpy arrays in, numpy arrays out.

:class:`OnnxTransducer` opens the graphs of an export directory (see :mod:`kd.export.modules` for their
inputs and outputs), checks that they come from one export, and exposes the encoder, the streaming encoder
and the joiner as functions; :class:`OnnxDecoder` puts the decoder graph behind the step API of
:mod:`kd.models.decoders` (``init_state``, ``step``, ``select_state``), plus ``cat_states``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from kd.export.metadata import ExportMetadata
from kd.export.storage import PARTS, find_model, model_filename, read_model_bytes

# A state's decoder part: the last c - 1 labels (N, c - 1) of a context decoder, or (h, c) of an LSTM,
# each (num_layers, N, H).
DecoderState = np.ndarray | tuple[np.ndarray, np.ndarray]


def make_session(path: Path, num_threads: int = 1) -> ort.InferenceSession:
    """A CPU session for the (possibly gzip-compressed) ONNX file ``path``."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: onnxruntime warns about unused initializers it prunes
    return ort.InferenceSession(
        read_model_bytes(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def session_metadata(session: ort.InferenceSession, path: Path) -> ExportMetadata:
    return ExportMetadata.from_props(session.get_modelmeta().custom_metadata_map, str(path))


def _zeros_like_input(info: ort.NodeArg, batch_size: int, batch_axis: str = "N") -> np.ndarray:
    """Zeros of a graph input's shape, ``batch_axis`` set to ``batch_size`` and other free axes to 0."""
    shape = [batch_size if d == batch_axis else (d if isinstance(d, int) else 0) for d in info.shape]
    dtype = np.int64 if info.type == "tensor(int64)" else np.float32
    return np.zeros(shape, dtype=dtype)


class OnnxDecoder:
    """The decoder graph with the step API.

    Args:
        session: the decoder graph's session.
        metadata: the export's metadata (decoder type, context size, blank id).
    """

    def __init__(self, session: ort.InferenceSession, metadata: ExportMetadata) -> None:
        self.session = session
        self.blank_id = metadata.blank_id
        self.context_size = metadata.context_size
        self.is_lstm = metadata.decoder_type == "lstm"
        self._inputs = {i.name: i for i in session.get_inputs()}

    def init_state(self, batch_size: int) -> DecoderState:
        """Blank labels before the sentence start (context decoders) or zero (h, c) (LSTM)."""
        if self.is_lstm:
            return _zeros_like_input(self._inputs["h"], batch_size), _zeros_like_input(
                self._inputs["c"], batch_size
            )
        return np.full((batch_size, self.context_size - 1), self.blank_id, dtype=np.int64)

    def step(self, tokens: np.ndarray, state: DecoderState) -> tuple[np.ndarray, DecoderState]:
        """tokens: (N,) int64, the label just emitted (blank_id first). Returns decoder_out (N, J) (already
        projected for the joiner) and the new state."""
        tokens = tokens.astype(np.int64)
        if self.is_lstm:
            out, h, c = self.session.run(None, {"y": tokens[:, None], "h": state[0], "c": state[1]})
            return out, (h, c)
        context = np.concatenate((state, tokens[:, None]), axis=1)
        (out,) = self.session.run(None, {"y": context})
        return out, context[:, 1:]

    def select_state(self, state: DecoderState, index: np.ndarray) -> DecoderState:
        """The rows ``index`` (M,) of a state."""
        if self.is_lstm:
            return state[0][:, index], state[1][:, index]
        return state[index]

    def cat_states(self, a: DecoderState, b: DecoderState) -> DecoderState:
        """The rows of ``a`` followed by those of ``b``."""
        if self.is_lstm:
            return np.concatenate((a[0], b[0]), axis=1), np.concatenate((a[1], b[1]), axis=1)
        return np.concatenate((a, b), axis=0)


class OnnxTransducer:
    """The graphs of one export directory (written by ``kd.bin.export``).

    Args:
        model_dir: the export directory.
        int8: use the int8 graphs (``<part>.int8.onnx``).
        num_threads: onnxruntime intra-op threads per session.
    Raises:
        FileNotFoundError: a graph is missing.
        ValueError: the graphs' metadata is not ``kd.bin.export``'s, or they come from different exports.
    """

    def __init__(self, model_dir: str | Path, int8: bool = False, num_threads: int = 1) -> None:
        self.model_dir = Path(model_dir)
        sessions: dict[str, ort.InferenceSession] = {}
        for part in PARTS:
            path = find_model(self.model_dir, part, int8)
            if path is None:
                if part == "encoder_streaming":
                    continue  # only causal and cascaded models have one
                hint = " (export with --int8)" if int8 else ""
                raise FileNotFoundError(
                    f"{self.model_dir / model_filename(part, int8)} not found{hint}; export the model with "
                    "`python -m kd.bin.export`"
                )
            session = make_session(path, num_threads)
            metadata = session_metadata(session, path)
            if part == "encoder":
                self.metadata = metadata
            elif metadata != self.metadata:
                raise ValueError(
                    f"{path} and the encoder in {self.model_dir} carry different metadata: they come from "
                    "different exports; export the model again into an empty directory"
                )
            sessions[part] = session
        self.encoder = sessions["encoder"]
        self.streaming_encoder = sessions.get("encoder_streaming")
        self.decoder = OnnxDecoder(sessions["decoder"], self.metadata)
        self.joiner = sessions["joiner"]

    def encode(self, features: np.ndarray, feature_lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """features: (N, T, F) float32, feature_lens: (N,) int64. Returns encoder_out (N, T', J) (projected
        for the joiner) and encoder_out_lens (N,)."""
        out, lens = self.encoder.run(
            None, {"x": features.astype(np.float32), "x_lens": feature_lens.astype(np.int64)}
        )
        return out, lens

    def _require_streaming(self) -> ort.InferenceSession:
        if self.streaming_encoder is None:
            raise ValueError(
                f"{self.model_dir} has no {model_filename('encoder_streaming')}: the model's encoder is not "
                "causal (nor a cascaded model's), so it cannot stream; decode without --streaming"
            )
        return self.streaming_encoder

    def init_streaming_states(self, batch_size: int) -> list[np.ndarray]:
        """The streaming encoder's state before the first chunk (the graph's state inputs, in order)."""
        inputs = self._require_streaming().get_inputs()[2:]
        return [_zeros_like_input(info, batch_size) for info in inputs]

    def encode_chunk(
        self, x: np.ndarray, x_lens: np.ndarray, states: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """One streaming window.

        Args:
            x: (N, W, F) float32, W = chunk_size * subsampling_factor + streaming_pad_frames.
            x_lens: (N,) valid frames of x.
            states: from :meth:`init_streaming_states` or the previous call.
        Returns:
            encoder_out (N, C, J), encoder_out_lens (N,), the new states.
        """
        session = self._require_streaming()
        names = [i.name for i in session.get_inputs()]
        feeds = dict(zip(names, [x.astype(np.float32), x_lens.astype(np.int64), *states]))
        out, out_lens, *new_states = session.run(None, feeds)
        return out, out_lens, new_states

    def join(self, encoder_out: np.ndarray, decoder_out: np.ndarray) -> np.ndarray:
        """encoder_out, decoder_out: (N, J) projected. Returns logits (N, V)."""
        (logits,) = self.joiner.run(None, {"encoder_out": encoder_out, "decoder_out": decoder_out})
        return logits
