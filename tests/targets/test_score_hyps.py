"""kd.bin.score_hyps: the stored hypotheses of unlabelled cuts scored against held-back transcripts."""

from __future__ import annotations

import pytest
from lhotse import CutSet, MonoCut, SupervisionSegment

from kd.bin import score_hyps
from kd.data.errors import DataError
from kd.targets.storage import META_FIELD


def _targets(path, hyps: dict[str, str | None]) -> str:
    """A targets manifest of unlabelled cuts whose records hold these hypotheses (None: no `hyp` target)."""
    cuts = []
    for cut_id, text in hyps.items():
        sup = SupervisionSegment(id=cut_id, recording_id=cut_id, start=0.0, duration=1.0)
        meta = {"types": ["one_best"] + (["hyp"] if text is not None else [])}
        if text is not None:
            meta["hyp"] = {"text": text, "score": -1.0}
        cuts.append(
            MonoCut(
                id=cut_id, start=0.0, duration=1.0, channel=0, supervisions=[sup], custom={META_FIELD: meta}
            )
        )
    CutSet.from_cuts(cuts).to_file(path)
    return str(path)


def _librispeech_refs(root):
    chapter = root / "parts" / "1" / "2"
    chapter.mkdir(parents=True)
    (chapter / "1-2.trans.txt").write_text("1-2-0000 THE CAT SAT\n1-2-0001 ON THE MAT TODAY\n")
    return root / "parts"


def test_wer_of_hypotheses_against_trans_files(tmp_path, capsys):
    refs = _librispeech_refs(tmp_path)
    # one substitution (SAT -> SAD), one deletion (TODAY), one insertion (A): 3 errors in 7 words
    targets = _targets(tmp_path / "t.jsonl.gz", {"1-2-0000": "THE CAT SAD", "1-2-0001": "ON A THE MAT"})
    stats = score_hyps.score_hypotheses(targets, score_hyps.read_references(refs))
    assert (stats.ins, stats.dels, stats.subs, stats.num_ref_words, stats.num_utts) == (1, 1, 1, 7, 2)
    score_hyps.main(["--refs", str(refs), targets])
    assert "2 cuts, %WER 42.86 [ 3 / 7, 1 ins, 1 del, 1 sub ]" in capsys.readouterr().out


def test_kaldi_text_file_gives_the_same_references(tmp_path):
    text = tmp_path / "text"
    text.write_text("1-2-0000 THE CAT SAT\n1-2-0001 ON THE MAT TODAY\n")
    assert score_hyps.read_references(text) == score_hyps.read_references(_librispeech_refs(tmp_path / "ls"))


def test_bad_input_names_the_problem(tmp_path):
    refs = score_hyps.read_references(_librispeech_refs(tmp_path))
    with pytest.raises(DataError, match="1-2-0009 has no reference"):
        score_hyps.score_hypotheses(_targets(tmp_path / "a.jsonl.gz", {"1-2-0009": "X"}), refs)
    with pytest.raises(DataError, match="1-2-0000 has no stored hypothesis"):
        score_hyps.score_hypotheses(_targets(tmp_path / "b.jsonl.gz", {"1-2-0000": None}), refs)
    settings = tmp_path / "c_targets.json"  # the targets run's settings, not its cuts
    settings.write_text("{}")
    with pytest.raises(DataError, match="c_targets.json: not a cuts manifest .*<name>_targets.jsonl.gz"):
        score_hyps.score_hypotheses(settings, refs)
    with pytest.raises(DataError, match="no such file or directory"):
        score_hyps.read_references(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no \\*.trans.txt files"):
        score_hyps.read_references(tmp_path / "empty")
    dup = tmp_path / "dup"
    (dup / "a").mkdir(parents=True)
    (dup / "b").mkdir()
    (dup / "a" / "1-2.trans.txt").write_text("1-2-0000 A\n")
    (dup / "b" / "1-2.trans.txt").write_text("1-2-0000 B\n")
    with pytest.raises(DataError, match="has a transcript in another file too"):
        score_hyps.read_references(dup)
