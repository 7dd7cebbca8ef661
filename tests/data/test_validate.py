"""Manifest validation: a clean corpus passes; each kind of damage is reported, naming file and item."""

from __future__ import annotations

from pathlib import Path

from fake_corpora import PreparedCorpus
from lhotse import CutSet
from lhotse.utils import fastcopy

from kd.data.io import cuts_path, load_manifests
from kd.data.tokenizer import Tokenizer, train_bpe
from kd.data.validate import check_cuts, check_recordings, check_supervisions


def test_prepared_corpus_is_clean(prepared: PreparedCorpus) -> None:
    for part in ("train", "dev", "unlabelled"):
        recs, sups = load_manifests(prepared.manifest_dir, prepared.prefix, part)
        assert check_recordings(recs, part) == []
        assert check_supervisions(sups, recs, part) == []
        cuts = CutSet.from_file(cuts_path(prepared.fbank_dir, prepared.prefix, part))
        assert check_cuts(cuts, part) == []


def test_damage_is_reported(prepared: PreparedCorpus, tmp_path: Path) -> None:
    recs, sups = load_manifests(prepared.manifest_dir, prepared.prefix, "dev")
    rec0, rec1 = recs[0], recs[1]
    gone = fastcopy(rec0, sources=[fastcopy(rec0.sources[0], source=str(tmp_path / "gone.flac"))])
    at_8k = fastcopy(rec1, sampling_rate=8000, num_samples=rec1.num_samples // 2)
    problems = check_recordings([gone, at_8k], "recs.jsonl.gz")
    assert problems == [
        f"recs.jsonl.gz: recording {rec0.id}: audio file {tmp_path / 'gone.flac'} is missing",
        f"recs.jsonl.gz: recording {rec1.id}: sampling rate 8000, expected 16000 "
        "(re-import it; the Kaldi importer resamples)",
    ]

    sup0, sup1, sup2 = sups[0], sups[1], sups[2]
    bad_sups = [
        fastcopy(sup0, text="  "),
        fastcopy(sup1, duration=sup1.duration + 5),
        fastcopy(sup2, recording_id="nope"),
        fastcopy(sup2, text=None),  # same id again; no text is fine (unlabelled)
    ]
    problems = check_supervisions(bad_sups, recs, "sups.jsonl.gz")
    assert len(problems) == 4
    assert f"sups.jsonl.gz: {sup0.id}: empty transcript" in problems[0]
    assert f"supervision {sup1.id}: [0.0, " in problems[1] and "is not inside its recording" in problems[1]
    assert "recording nope is not in the recordings" in problems[2]
    assert f"supervision {sup2.id} appears twice" in problems[3]


def test_cut_problems_and_unknown_characters(prepared: PreparedCorpus, tmp_path: Path) -> None:
    cuts = CutSet.from_file(cuts_path(prepared.fbank_dir, prepared.prefix, "dev")).to_eager()
    c0, c1 = cuts[0], cuts[1]
    moved = fastcopy(c0, features=fastcopy(c0.features, storage_path=str(tmp_path / "none.lca")))
    lower = fastcopy(c1, supervisions=[fastcopy(c1.supervisions[0], text="the dog")])
    tok = Tokenizer(train_bpe([s.text for c in cuts for s in c.supervisions], 30, tmp_path / "lang"))
    problems = check_cuts(CutSet.from_cuts([moved, lower]), "cuts.jsonl.gz", tokenizer=tok)
    archive, model = tmp_path / "none.lca", tmp_path / "lang" / "bpe.model"
    assert problems == [
        f"cuts.jsonl.gz: cut {c0.id}: feature archive {archive} is missing (rerun compute_fbank)",
        f"cuts.jsonl.gz: {c1.supervisions[0].id}: characters 'deghot' are not in {model}",
    ]
