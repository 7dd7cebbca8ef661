"""decode_dataset over a list of batches with the fake model."""

from __future__ import annotations

import pytest
import torch

from kd.decode import greedy_search_batch, modified_beam_search
from kd.decode.driver import decode_dataset

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
