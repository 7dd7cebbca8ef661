"""decode_dataset over a list of batches with the fake model."""

from __future__ import annotations

import pytest
import torch

from kd.decode import greedy_search_batch, modified_beam_search
from kd.decode.driver import Search, decode_dataset, decode_searches

from .fake_model import make_model


class WordTokenizer:
    def decode(self, ids: list[int]) -> str:
        return " ".join(f"w{i}" for i in ids)


def make_batches() -> list[dict]:
    g = torch.Generator().manual_seed(3)
    batches = []
    for n, lens in enumerate([[40, 23], [31]]):
        batches.append(
            {
                "features": torch.randn(len(lens), max(lens), 80, generator=g),
                "feature_lens": torch.tensor(lens),
                "texts": [f"ref {n} {i}" for i in range(len(lens))],
                "cut_ids": [f"cut-{n}-{i}" for i in range(len(lens))],
            }
        )
    return batches


@pytest.mark.parametrize("method", ["greedy_search", "modified_beam_search", "streaming_greedy_search"])
def test_decode_dataset(method: str) -> None:
    model = make_model()
    batches = make_batches()
    results, stats = decode_dataset(model, batches, WordTokenizer(), method, beam=3, chunk_size=2)
    assert [r[0] for r in results] == ["cut-0-0", "cut-0-1", "cut-1-0"]
    assert results[1][1] == ["ref", "0", "1"]
    expected = []
    for batch in batches:
        with torch.no_grad():
            encoder_out, lens = model.encoder(batch["features"], batch["feature_lens"])
        if method == "modified_beam_search":
            expected += modified_beam_search(model, encoder_out, lens, beam=3)
        else:  # the fake encoder is chunk-consistent, so streaming gives the full-context result
            expected += greedy_search_batch(model, encoder_out, lens)
    assert [r[2] for r in results] == [[f"w{i}" for i in hyp] for hyp in expected]
    assert any(r[2] for r in results)
    assert stats["audio_seconds"] == pytest.approx((40 + 23 + 31) * 0.01)
    assert stats["decode_seconds"] > 0


def test_decode_dataset_bad_input() -> None:
    model = make_model()
    with pytest.raises(ValueError, match="unknown decoding method"):
        decode_dataset(model, make_batches(), WordTokenizer(), "beam_search")
    batch = make_batches()[0]
    del batch["cut_ids"]
    with pytest.raises(KeyError, match="cut_ids"):
        decode_dataset(model, [batch], WordTokenizer(), "greedy_search")


def test_searches_share_one_encoder_forward_per_batch() -> None:
    model = make_model()
    batches = make_batches()
    searches = [
        Search("greedy_search"),
        Search("modified_beam_search", beam=3),
        Search("greedy_search", max_sym_per_frame=2, blank_penalty=1.0),
        Search("streaming_greedy_search", chunk_size=2),
    ]
    alone = [
        decode_dataset(
            model,
            batches,
            WordTokenizer(),
            s.method,
            beam=s.beam,
            max_sym_per_frame=s.max_sym_per_frame,
            chunk_size=s.chunk_size,
            blank_penalty=s.blank_penalty,
        )
        for s in searches
    ]
    calls = []
    encoder_forward = model.encoder.forward
    model.encoder.forward = lambda *args: calls.append(args) or encoder_forward(*args)
    together = decode_searches(model, batches, WordTokenizer(), searches)
    assert len(calls) == len(batches)  # the streaming search runs streaming_forward, chunk by chunk
    assert [r for r, _ in together] == [r for r, _ in alone]
    assert together[0][0] != together[2][0]  # the penalty and max-sym searches differ from plain greedy
    for _, stats in together:
        assert stats["audio_seconds"] == pytest.approx((40 + 23 + 31) * 0.01) and stats["decode_seconds"] > 0


def test_search_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown decoding method"):
        Search("beam_search")
    with pytest.raises(ValueError, match="LM shallow fusion needs modified_beam_search"):
        Search("greedy_search", lm=object())
    with pytest.raises(ValueError, match="at least one search"):
        decode_searches(make_model(), make_batches(), WordTokenizer(), [])
