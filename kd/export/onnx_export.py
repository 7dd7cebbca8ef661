"""Exporting a trained transducer to ONNX: fp32 graphs, an int8 variant, metadata, compact sparse storage.

Graphs are traced with torch's TorchScript-based exporter (``dynamo=False``) at opset 17, the first opset
with a LayerNormalization operator; onnxruntime >= 1.14 runs it. The dynamo exporter would need the extra
``onnxscript`` package and cannot trace the encoder's data-dependent mask choice. Two gaps between that
exporter and onnxruntime are closed here rather than in the model code:

- the exporter has no symbolic for the in-place ``&=`` of :func:`kd.models.attention.chunk_attention_mask`;
  it is registered for the duration of an export as ONNX ``And``;
- onnxruntime has no EyeLike kernel for booleans (the attention masks' ``torch.eye``); such nodes are
  rewritten to compute in float and cast to bool, which is exact.

int8: onnxruntime's dynamic quantisation of the MatMul weights (per tensor, int8; activations are
quantised per call), as icefall quantises its ONNX exports. The convolutions (subsampling, depthwise
kernels), embeddings and the 2-D Gemms of the decoder and joiner stay fp32: together a small share of a
student's weights.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx
import torch
from onnx import TensorProto, helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import nn

from kd.data.features import FRAME_SHIFT, SAMPLING_RATE
from kd.export.metadata import ExportMetadata, file_sha256
from kd.export.modules import conformer_encoder, export_modules, streaming_encoder
from kd.export.storage import PARTS, model_filename, write_model_bytes
from kd.models.cascaded import CascadedEncoder
from kd.models.decoders import LSTMDecoder, TiedReducedDecoder
from kd.models.transducer import Transducer

log = logging.getLogger(__name__)

OPSET = 17
COMPRESS_CHOICES = ("auto", "gzip", "none")
# "auto" gzips a model whose weights are at least this share zeros (a sparse student).
SPARSE_ZERO_FRACTION = 0.5


def exported_parameters(model: Transducer) -> list[torch.Tensor]:
    """The weights the exported graphs hold: encoder, decoder and joiner (a shared tensor once); not the
    simple projections, which only the pruned training loss uses."""
    seen: dict[int, torch.Tensor] = {}
    for part in (model.encoder, model.decoder, model.joiner):
        for p in part.parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


def nonzero_fraction(model: Transducer) -> float:
    """Share of the exported weights that are non-zero."""
    params = exported_parameters(model)
    total = sum(p.numel() for p in params)
    return sum(int(torch.count_nonzero(p.detach())) for p in params) / total


def build_metadata(model: Transducer, bpe_model: str | Path, source: str) -> ExportMetadata:
    """The :class:`ExportMetadata` of ``model`` trained with the sentencepiece model ``bpe_model``."""
    encoder, decoder = conformer_encoder(model), model.decoder
    if isinstance(decoder, LSTMDecoder):
        decoder_type, context_size = "lstm", 1
    else:
        decoder_type = "tied" if isinstance(decoder, TiedReducedDecoder) else "stateless"
        context_size = decoder.context_size
    return ExportMetadata(
        vocab_size=model.vocab_size,
        blank_id=model.blank_id,
        feature_dim=encoder.config.num_features,
        sampling_rate=SAMPLING_RATE,
        frame_shift=FRAME_SHIFT,
        subsampling_factor=encoder.subsampling_factor,
        encoder_out_dim=model.joiner.output_linear.in_features,
        decoder_type=decoder_type,
        context_size=context_size,
        streaming=streaming_encoder(model) is not None,
        cascaded=isinstance(model.encoder, CascadedEncoder),
        chunk_size=encoder.chunk_size,
        left_context_frames=encoder.left_context_frames,
        streaming_pad_frames=encoder.streaming_pad_frames,
        tokenizer_sha256=file_sha256(bpe_model),
        nonzero_fraction=nonzero_fraction(model),
        opset=OPSET,
        source=source,
    )


def _iand(g: torch.Graph, a: torch.Value, b: torch.Value) -> torch.Value:
    return g.op("And", a, b)


@contextlib.contextmanager
def _export_symbolics() -> Iterator[None]:
    """Registers the symbolic the exporter lacks (in-place ``&=``) while an export runs."""
    torch.onnx.register_custom_op_symbolic("aten::__iand_", _iand, OPSET)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::__iand_", OPSET)


def cast_bool_eyelike(model: onnx.ModelProto) -> None:
    """Rewrites every EyeLike node to run on float and cast back: onnxruntime has no bool EyeLike kernel.

    Only nodes in the main graph are rewritten (the traced graphs have no subgraphs).
    """
    nodes = []
    for node in model.graph.node:
        if node.op_type != "EyeLike":
            nodes.append(node)
            continue
        as_float, out_float = f"{node.input[0]}_as_float", f"{node.output[0]}_as_float"
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "dtype"}
        nodes += [
            helper.make_node(
                "Cast", [node.input[0]], [as_float], name=f"{node.name}_in", to=TensorProto.FLOAT
            ),
            helper.make_node("EyeLike", [as_float], [out_float], name=node.name, **attrs),
            helper.make_node(
                "Cast", [out_float], [node.output[0]], name=f"{node.name}_out", to=TensorProto.BOOL
            ),
        ]
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def to_onnx(module: nn.Module) -> onnx.ModelProto:
    """Traces ``module`` (an :mod:`kd.export.modules` graph) on its example inputs into an ONNX model."""
    buffer = io.BytesIO()
    with _export_symbolics(), torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every Python int it records as a constant; those are the config's
        # (chunk sizes, kernel sizes), constant by design.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # Slices with step -1 (the tied decoder's flip) are computed at run time instead of folded.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        # The LSTM decoder graph takes h and c as inputs, which is what this warning asks for.
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(
            module,
            module.example_inputs(),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=module.input_names,
            output_names=module.output_names,
            dynamic_axes=module.dynamic_axes,
        )
    model = onnx.load_from_string(buffer.getvalue())
    cast_bool_eyelike(model)
    onnx.checker.check_model(model)
    return model


def set_metadata(model: onnx.ModelProto, metadata: ExportMetadata) -> None:
    del model.metadata_props[:]
    for key, value in metadata.to_props().items():
        model.metadata_props.add(key=key, value=value)


def quantize_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """Dynamic int8 quantisation of the MatMul weights (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "int8.onnx"
        # The quantiser logs a line per tensor at INFO and advice to pre-process (shape inference, which
        # dynamic quantisation of MatMul weights does not need) at WARNING, all on the root logger.
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(model, out, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        quantized = onnx.load(out)
    # The quantiser's shape annotations of every tensor: onnxruntime infers them again at load.
    del quantized.graph.value_info[:]
    return quantized


def export_onnx(
    model: Transducer,
    bpe_model: str | Path,
    out_dir: str | Path,
    source: str = "",
    int8: bool = False,
    compress: str = "auto",
) -> dict[str, Path]:
    """Writes the encoder (and, for a causal encoder or a cascaded model, the streaming encoder), decoder and
    joiner graphs.

    Args:
        model: the transducer (put in eval mode here).
        bpe_model: its sentencepiece model (hashed into the metadata).
        out_dir: created if missing; files ``<part>.onnx`` (and ``<part>.int8.onnx``), see
            :mod:`kd.export.storage`.
        source: where the weights came from, for the metadata.
        int8: also write the dynamically quantised int8 variant of every graph.
        compress: ``gzip`` the files, ``none``, or ``auto``: gzip when at least half the weights are zeros.
    Returns:
        ``{file name: path}`` of the files written.
    """
    if compress not in COMPRESS_CHOICES:
        raise ValueError(f"compress={compress!r} is not one of {list(COMPRESS_CHOICES)}")
    model.eval()
    metadata = build_metadata(model, bpe_model, source)
    gz = compress == "gzip" or (
        compress == "auto" and 1.0 - metadata.nonzero_fraction >= SPARSE_ZERO_FRACTION
    )
    if gz and compress == "auto":
        log.info(
            "%.0f%% of the weights are zeros: writing gzip-compressed models",
            100 * (1 - metadata.nonzero_fraction),
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for part, module in export_modules(model).items():
        graphs = {False: to_onnx(module)}
        if int8:
            graphs[True] = quantize_int8(graphs[False])
        for quantized, graph in graphs.items():
            set_metadata(graph, metadata)
            name = model_filename(part, quantized, gz)
            write_model_bytes(out_dir / name, graph.SerializeToString(), gz)
            written[name] = out_dir / name
    # Graphs of an earlier export into this directory (another compression, int8, a streaming encoder the
    # model lacks) would otherwise be found by the runtime next to the new ones.
    for part in PARTS:
        for stale in (model_filename(part, q, c) for q in (False, True) for c in (False, True)):
            if stale not in written:
                (out_dir / stale).unlink(missing_ok=True)
    return written
