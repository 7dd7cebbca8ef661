"""Exported graphs reproduce the PyTorch model (onnxruntime and TorchScript), carry their metadata, and store
sparse models compactly. Tolerance: atol 1e-4 on float32 outputs (observed differences are ~1e-6)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from kd.export.metadata import ExportMetadata, check_tokenizer
from kd.export.onnx_export import OPSET, build_metadata, export_onnx
from kd.export.onnx_model import OnnxTransducer
from kd.export.torchscript_export import export_torchscript

from .tiny_models import CHUNK_SIZE, LEFT_CONTEXT, make_model

ATOL = 1e-4


def features(lens: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, 80) random features; frames past each length hold large values a leak would show."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lens), max(lens), 80, generator=g)
    for b, n in enumerate(lens):
        x[b, n:] = 30.0
    return x, torch.tensor(lens)


def assert_close(actual: np.ndarray, expected: torch.Tensor) -> None:
    np.testing.assert_allclose(actual, expected.detach().numpy(), rtol=0, atol=ATOL)


@pytest.mark.parametrize("causal", [False, True])
def test_encoder_matches_pytorch(tiny, tmp_path: Path, causal: bool) -> None:
    model = make_model(causal=causal)
    export_onnx(model, tiny.bpe_model, tmp_path)
    onnx_model = OnnxTransducer(tmp_path)
    x, x_lens = features([83, 50, 31])  # lengths other than the traced example's
    out, out_lens = onnx_model.encode(x.numpy(), x_lens.numpy())
    with torch.no_grad():
        ref, ref_lens = model.encoder(x, x_lens)
        ref = model.joiner.encoder_proj(ref)
    np.testing.assert_array_equal(out_lens, ref_lens.numpy())
    for b, n in enumerate(ref_lens.tolist()):
        assert_close(out[b, :n], ref[b, :n])
    assert (onnx_model.streaming_encoder is not None) == causal


def test_encoder_with_low_rate_blocks_matches_pytorch(tiny, tmp_path: Path) -> None:
    # The frame-rate bridges pad, reshape and repeat by sizes the graph must compute from its input.
    model = make_model(block_downsampling=(2, 1))
    export_onnx(model, tiny.bpe_model, tmp_path)
    x, x_lens = features([83, 50, 31, 37])  # odd and even low-rate lengths, none the traced example's
    out, out_lens = OnnxTransducer(tmp_path).encode(x.numpy(), x_lens.numpy())
    with torch.no_grad():
        ref, ref_lens = model.encoder(x, x_lens)
        ref = model.joiner.encoder_proj(ref)
    np.testing.assert_array_equal(out_lens, ref_lens.numpy())
    for b, n in enumerate(ref_lens.tolist()):
        assert_close(out[b, :n], ref[b, :n])


@pytest.mark.parametrize("left_context_frames", [LEFT_CONTEXT, -1])
def test_streaming_encoder_matches_streaming_forward(tiny, tmp_path: Path, left_context_frames: int) -> None:
    """Chunk by chunk with explicit states, the ONNX graph gives PyTorch's ``streaming_forward`` outputs and
    states (the ONNX key/value caches always hold the last ``left_context_frames`` frames, PyTorch's the
    frames seen so far: they agree once a cache is full), and together the chunks give the full forward."""
    model = make_model(causal=True, left_context_frames=left_context_frames)
    export_onnx(model, tiny.bpe_model, tmp_path)
    onnx_model = OnnxTransducer(tmp_path)
    encoder = model.encoder
    shift = CHUNK_SIZE * encoder.subsampling_factor
    window = shift + encoder.streaming_pad_frames
    x, x_lens = features([95, 60, 22])
    num_chunks = math.ceil(int(encoder.output_lengths(x_lens).max()) / CHUNK_SIZE)
    x = torch.nn.functional.pad(x, (0, 0, 0, (num_chunks - 1) * shift + window - x.size(1)))

    states = onnx_model.init_streaming_states(3)
    ref_states = encoder.get_init_states(3)
    outs = []
    with torch.no_grad():
        for k in range(num_chunks):
            chunk, chunk_lens = x[:, k * shift : k * shift + window], (x_lens - k * shift).clamp(0, window)
            out, out_lens, states = onnx_model.encode_chunk(chunk.numpy(), chunk_lens.numpy(), states)
            ref, ref_lens, ref_states = encoder.streaming_forward(chunk, chunk_lens, ref_states)
            np.testing.assert_array_equal(out_lens, ref_lens.numpy())
            for b, n in enumerate(ref_lens.tolist()):
                assert_close(out[b, :n], encoder_proj(model, ref[b, :n]))
            outs.append(out)
        full, full_lens = model.encoder(x, x_lens)
    n = model.encoder.config.num_layers
    assert num_chunks * CHUNK_SIZE > LEFT_CONTEXT  # the caches are full: states comparable
    for i in range(n):
        assert_close(states[i], ref_states.keys[i])
        assert_close(states[n + i], ref_states.values[i])
        assert_close(states[2 * n + i], ref_states.conv[i])
    np.testing.assert_array_equal(states[3 * n], ref_states.processed_frames.numpy())
    streamed = np.concatenate(outs, axis=1)
    for b, frames in enumerate(full_lens.tolist()):
        assert_close(streamed[b, :frames], encoder_proj(model, full[b, :frames]))


def encoder_proj(model, encoder_out: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.joiner.encoder_proj(encoder_out)


def test_cascaded_encoders_match_pytorch(tiny, tmp_path: Path) -> None:
    """A cascaded model's encoder graph is its second pass, its streaming graph its causal first pass."""
    model = make_model(cascaded=True)
    export_onnx(model, tiny.bpe_model, tmp_path)
    onnx_model = OnnxTransducer(tmp_path)
    assert onnx_model.metadata.cascaded and onnx_model.metadata.streaming
    window = CHUNK_SIZE * model.encoder.subsampling_factor + model.encoder.first_pass.streaming_pad_frames
    x, x_lens = features([83, window])
    with torch.no_grad():
        first, second, lens = model.encoder.forward_both(x, x_lens)
    out, out_lens = onnx_model.encode(x.numpy(), x_lens.numpy())
    np.testing.assert_array_equal(out_lens, lens.numpy())
    for b, n in enumerate(lens.tolist()):
        assert_close(out[b, :n], encoder_proj(model, second[b, :n]))
    chunk = x[:, :window].numpy()
    out, out_lens, _ = onnx_model.encode_chunk(
        chunk, np.array([window, window]), onnx_model.init_streaming_states(2)
    )
    assert out_lens.tolist() == [CHUNK_SIZE, CHUNK_SIZE]
    assert_close(out, encoder_proj(model, first[:, :CHUNK_SIZE]))
    assert not np.allclose(out, encoder_proj(model, second[:, :CHUNK_SIZE]).numpy(), atol=0.1)


@pytest.mark.parametrize("decoder", ["stateless", "tied", "lstm"])
def test_decoder_and_joiner_match_pytorch(tiny, tmp_path: Path, decoder: str) -> None:
    model = make_model(decoder=decoder)
    export_onnx(model, tiny.bpe_model, tmp_path)
    onnx_model = OnnxTransducer(tmp_path)
    tokens = torch.tensor([[0, 0, 0], [5, 1, 29], [7, 7, 3], [2, 9, 4]])  # a step per row, 3 hypotheses
    state, ref_state = onnx_model.decoder.init_state(3), model.decoder.init_state(3)
    with torch.no_grad():
        for step in tokens:
            out, state = onnx_model.decoder.step(step.numpy(), state)
            ref, ref_state = model.decoder.step(step, ref_state)
            assert_close(out, model.joiner.decoder_proj(ref))
        if decoder == "lstm":
            assert_close(state[0], ref_state[0])
            assert_close(state[1], ref_state[1])
        else:
            np.testing.assert_array_equal(state, ref_state.numpy())
        g = torch.Generator().manual_seed(1)
        enc, dec = torch.randn(5, 24, generator=g), torch.randn(5, 24, generator=g)
        assert_close(onnx_model.join(enc.numpy(), dec.numpy()), model.joiner(enc, dec, project_input=False))


def test_torchscript_matches_pytorch(tmp_path: Path) -> None:
    model = make_model(decoder="lstm", causal=True)
    written = export_torchscript(model, tmp_path)
    assert sorted(written) == ["decoder.pt", "encoder.pt", "encoder_streaming.pt", "joiner.pt"]
    encoder = torch.jit.load(str(tmp_path / "encoder.pt"))
    streaming = torch.jit.load(str(tmp_path / "encoder_streaming.pt"))
    decoder = torch.jit.load(str(tmp_path / "decoder.pt"))
    x, x_lens = features([57, 40])
    with torch.no_grad():
        out, out_lens = encoder(x, x_lens)
        ref, ref_lens = model.encoder(x, x_lens)
        assert torch.equal(out_lens, ref_lens)
        for i, n in enumerate(ref_lens.tolist()):
            assert_close(out[i, :n].numpy(), model.joiner.encoder_proj(ref[i, :n]))
        window = CHUNK_SIZE * 4 + 3
        states = (
            [torch.zeros(2, 4, LEFT_CONTEXT, 8)] * 4 + [torch.zeros(2, 32, 4)] * 2 + [torch.zeros(2).long()]
        )
        chunk_out = streaming(x[:, :window], torch.tensor([window, window]), *states)[0]
        assert_close(chunk_out.numpy(), model.joiner.encoder_proj(ref[:, :CHUNK_SIZE]))
        h, c = model.decoder.init_state(2)
        dec_out = decoder(torch.tensor([[0], [3]]), h, c)[0]
        assert_close(
            dec_out.numpy(), model.joiner.decoder_proj(model.decoder.step(torch.tensor([0, 3]), (h, c))[0])
        )


def test_metadata_in_every_file(tiny, tmp_path: Path) -> None:
    model = make_model(causal=True)
    written = export_onnx(model, tiny.bpe_model, tmp_path, source="unit test", int8=True)
    assert sorted(written) == sorted(
        f"{part}{q}.onnx"
        for part in ("encoder", "encoder_streaming", "decoder", "joiner")
        for q in ("", ".int8")
    )
    sha = hashlib.sha256(Path(tiny.bpe_model).read_bytes()).hexdigest()
    for path in written.values():
        proto = onnx.load(path)
        assert proto.opset_import[0].version == OPSET
        props = {p.key: p.value for p in proto.metadata_props}
        meta = ExportMetadata.from_props(props, str(path))
        assert (meta.vocab_size, meta.blank_id, meta.subsampling_factor, meta.feature_dim) == (30, 0, 4, 80)
        assert (meta.context_size, meta.chunk_size, meta.left_context_frames) == (2, CHUNK_SIZE, LEFT_CONTEXT)
        assert (meta.streaming_pad_frames, meta.decoder_type, meta.streaming) == (3, "stateless", True)
        assert not meta.cascaded
        assert meta.tokenizer_sha256 == sha and meta.source == "unit test"
        assert 0.95 < meta.nonzero_fraction < 1.0  # the stateless decoder's blank embedding is zero
        assert meta.encoder_out_dim == 24 and meta.sampling_rate == 16000 and meta.frame_shift == 0.01


def test_metadata_errors(tiny) -> None:
    props = build_metadata(make_model(), tiny.bpe_model, "x").to_props()
    with pytest.raises(ValueError, match="model_type"):
        ExportMetadata.from_props({**props, "model_type": "other"}, "m.onnx")
    with pytest.raises(ValueError, match="lacks 'vocab_size'"):
        ExportMetadata.from_props({k: v for k, v in props.items() if k != "vocab_size"}, "m.onnx")
    with pytest.raises(ValueError, match="chunk_size=True is not of type int"):
        ExportMetadata.from_props({**props, "chunk_size": "true"}, "m.onnx")


def test_other_tokenizer_refused(tiny, tmp_path: Path) -> None:
    from fake_corpora import WORDS

    from kd.data.tokenizer import train_bpe

    meta = build_metadata(make_model(), tiny.bpe_model, "x")
    check_tokenizer(meta, "exported", tiny.bpe_model, 30)
    # Other text than the tiny corpus' (its sentences draw 4 of WORDS at random): another model file.
    texts = [" ".join(reversed(WORDS[i : i + 6])) for i in range(len(WORDS) - 5)]
    for vocab_size in (30, 34):  # same size (other ids) and another size
        other = train_bpe(texts, vocab_size, tmp_path / f"lang{vocab_size}")
        with pytest.raises(
            ValueError, match=rf"exported.*{meta.vocab_size} tokens.*{other}.*{vocab_size} tokens"
        ):
            check_tokenizer(meta, "exported", other, vocab_size)


def test_sparse_model_stored_compressed(tiny, tmp_path: Path) -> None:
    model = make_model(causal=True)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:  # magnitude pruning of the weight matrices to 90% zeros
                p.masked_fill_(p.abs() <= p.abs().flatten().quantile(0.9), 0.0)
    dense = export_onnx(model, tiny.bpe_model, tmp_path / "dense", int8=True, compress="none")
    export_onnx(make_model(), tiny.bpe_model, tmp_path / "sparse", int8=True, compress="none")
    sparse = export_onnx(model, tiny.bpe_model, tmp_path / "sparse", int8=True)
    assert sorted(sparse) == sorted(f"{name}.gz" for name in dense)
    # The earlier export's graphs into the same directory are gone: only the new ones can be found.
    assert sorted(p.name for p in (tmp_path / "sparse").iterdir() if p.is_file()) == sorted(sparse)
    size = {name: path.stat().st_size for name, path in sparse.items()}
    assert size["encoder.onnx.gz"] < 0.5 * dense["encoder.onnx"].stat().st_size
    assert size["encoder.int8.onnx.gz"] < 0.5 * dense["encoder.int8.onnx"].stat().st_size
    x, x_lens = features([60, 45])
    for int8 in (False, True):
        a = OnnxTransducer(tmp_path / "dense", int8=int8).encode(x.numpy(), x_lens.numpy())
        b = OnnxTransducer(tmp_path / "sparse", int8=int8)
        assert b.metadata.nonzero_fraction < 0.5
        np.testing.assert_array_equal(a[0], b.encode(x.numpy(), x_lens.numpy())[0])


def initializer_bytes(path: Path) -> int:
    return sum(numpy_helper.to_array(t).nbytes for t in onnx.load(path).graph.initializer)


def test_int8_loads_and_is_close(tiny, tmp_path: Path) -> None:
    model = make_model(causal=True)
    written = export_onnx(model, tiny.bpe_model, tmp_path, int8=True)
    # The weights shrink ~4x; the file less, as the tiny model's graph structure is a large share of it.
    assert initializer_bytes(written["encoder.int8.onnx"]) < 0.4 * initializer_bytes(written["encoder.onnx"])
    assert written["encoder.int8.onnx"].stat().st_size < written["encoder.onnx"].stat().st_size
    fp32, int8 = OnnxTransducer(tmp_path), OnnxTransducer(tmp_path, int8=True)
    x, x_lens = features([70, 70])
    ref = fp32.encode(x.numpy(), x_lens.numpy())[0]
    out = int8.encode(x.numpy(), x_lens.numpy())[0]
    assert np.abs(out - ref).mean() < 0.1 * np.abs(ref).mean()
    states = int8.init_streaming_states(2)
    chunk = x[:, : CHUNK_SIZE * 4 + 3].numpy()
    out, _, _ = int8.encode_chunk(chunk, np.array([chunk.shape[1]] * 2), states)
    assert np.abs(out - ref[:, :CHUNK_SIZE]).mean() < 0.1 * np.abs(ref).mean()


def test_missing_graph_and_mixed_exports(tiny, tmp_path: Path) -> None:
    export_onnx(make_model(), tiny.bpe_model, tmp_path / "a")
    with pytest.raises(FileNotFoundError, match=r"encoder\.int8\.onnx not found \(export with --int8\)"):
        OnnxTransducer(tmp_path / "a", int8=True)
    export_onnx(make_model(decoder="lstm"), tiny.bpe_model, tmp_path / "b")
    (tmp_path / "a" / "decoder.onnx").write_bytes((tmp_path / "b" / "decoder.onnx").read_bytes())
    with pytest.raises(ValueError, match="different exports"):
        OnnxTransducer(tmp_path / "a")
