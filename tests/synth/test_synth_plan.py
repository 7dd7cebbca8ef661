"""The corpus plan (families, speakers, text) and the per-utterance perturbation, without any TTS engine."""

from __future__ import annotations

import numpy as np
import pytest

from kd.data.synth import effects
from kd.data.synth.plan import (
    DEV,
    LABELLED_SPLITS,
    SIZES,
    SPLITS,
    TEST,
    TRAIN,
    UNLABELLED,
    CorpusSize,
    NotEnoughTextError,
    estimated_seconds,
    lm_sentences,
    make_plan,
)
from kd.data.synth.text import Sentence
from kd.data.synth.voices import Voice, all_voices


def _tag(i: int) -> str:
    """A distinct letters-only word per sentence."""
    return "".join(chr(97 + (i // 26**k) % 26) for k in range(3))


VOICES = all_voices()
SENTENCES = [
    Sentence("s", f"Sentence {' '.join(['word'] * (i % 7))} {_tag(i)} ends here.") for i in range(3000)
]
SMALL = CorpusSize(
    hours={TRAIN: 0.2, DEV: 0.04, TEST: 0.04, UNLABELLED: 0.08},
    speakers={TRAIN: 12, DEV: 4, TEST: 4, UNLABELLED: 5},
)


def test_inventory_families_group_shared_speakers() -> None:
    fam = {(v.engine, v.name): v.family for v in VOICES}
    assert fam[("flite", "slt")] == fam[("festival", "cmu_us_slt_arctic_hts")]
    assert fam[("flite", "kal16")] == fam[("festival", "kal_diphone")]
    assert fam[("espeak-ng", "en-us+Hugo")] == fam[("espeak-ng", "en-gb+Henrique")]
    assert fam[("espeak-ng", "en-us+m1")] != fam[("espeak-ng", "en-us+m2")]


def test_plan_splits_are_disjoint_by_family_speaker_and_text() -> None:
    plan = make_plan(SENTENCES, VOICES, SMALL, seed=3)
    fams = {s: {sp.voice.family for sp in plan.speakers if sp.split == s} for s in SPLITS}
    assert not fams[DEV] & fams[TEST]
    for held in (DEV, TEST):
        assert not fams[held] & (fams[TRAIN] | fams[UNLABELLED])
        # each held-out split gets a recorded (flite/festival) family and formant ones
        kinds = {sp.voice.recorded for sp in plan.speakers if sp.split == held}
        assert kinds == {True, False}
    # unlabelled speakers are new speakers drawn from the train families
    assert all(plan.family_split[f] == TRAIN for f in fams[TRAIN] | fams[UNLABELLED])
    ids = [sp.id for sp in plan.speakers]
    assert len(ids) == len(set(ids)) == sum(SMALL.speakers.values())
    texts = {s: {u.transcript for u in plan.utterances if u.split == s} for s in SPLITS}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            assert not texts[a] & texts[b]
    assert len({u.id for u in plan.utterances}) == len(plan.utterances)
    assert [u.index for u in plan.utterances] == list(range(len(plan.utterances)))


def test_lm_text_is_the_list_but_for_what_dev_test_and_unlabelled_read() -> None:
    plan = make_plan(SENTENCES, VOICES, SMALL, seed=3)
    for u in plan.utterances:
        assert " ".join(u.sentences) == u.transcript
    read = {s: {t for u in plan.utterances if u.split == s for t in u.sentences} for s in SPLITS}
    doubled = [*SENTENCES, SENTENCES[0]]  # a sentence twice in the list is written once
    lm = lm_sentences(doubled, plan)
    assert len(lm) == len(set(lm))
    assert set(lm) == {s.transcript for s in SENTENCES} - read[DEV] - read[TEST] - read[UNLABELLED]
    assert read[TRAIN] <= set(lm) and read[DEV] and read[TEST] and read[UNLABELLED]
    assert lm == [s.transcript for s in SENTENCES if s.transcript in set(lm)]  # in list order


def test_plan_is_a_function_of_the_seed() -> None:
    a, b, c = (make_plan(SENTENCES, VOICES, SMALL, seed=s) for s in (5, 5, 6))

    def key(plan):
        return [(u.id, u.text, u.speaker) for u in plan.utterances]

    assert key(a) == key(b)
    assert [(u.id, u.text) for u in a.utterances] != [(u.id, u.text) for u in c.utterances]


def test_plan_meets_the_estimated_hours() -> None:
    plan = make_plan(SENTENCES, VOICES, SMALL, seed=1)
    for split in SPLITS:
        est = sum(
            estimated_seconds(len(u.transcript.split()), u.speaker.rate)
            for u in plan.utterances
            if u.split == split
        )
        assert est == pytest.approx(SMALL.hours[split] * 3600, rel=0.1)


def test_plan_runs_out_of_text_clearly() -> None:
    with pytest.raises(NotEnoughTextError, match="max-vocab"):
        make_plan(SENTENCES[:50], VOICES, SMALL, seed=1)


def test_too_few_families_is_an_error() -> None:
    voices = [Voice("espeak-ng", "en-us+m1", "espeak-m1", "M", False)]
    with pytest.raises(ValueError, match="too few voice families"):
        make_plan(SENTENCES, voices, SMALL, seed=1)


def test_sizes_scale_keeping_proportions() -> None:
    size = SIZES["default"].scaled(hours=1.7, num_speakers=96)
    assert sum(size.hours.values()) == pytest.approx(1.7)
    assert size.hours[TRAIN] / size.hours[DEV] == pytest.approx(
        SIZES["default"].hours[TRAIN] / SIZES["default"].hours[DEV]
    )
    assert sum(size.speakers.values()) == pytest.approx(96, abs=2)
    assert set(LABELLED_SPLITS) < set(SPLITS)


def test_perturbation_depends_only_on_seed_and_index() -> None:
    p1 = effects.draw_perturbation(effects.utterance_rng(42, 7), 1.0, 0.0)
    p2 = effects.draw_perturbation(effects.utterance_rng(42, 7), 1.0, 0.0)
    p3 = effects.draw_perturbation(effects.utterance_rng(42, 8), 1.0, 0.0)
    assert p1 == p2 != p3
    cfg = effects.PerturbationConfig()
    draws = [effects.draw_perturbation(effects.utterance_rng(0, i), 1.1, 100.0) for i in range(400)]
    for p in draws:
        assert cfg.speed[0] <= p.speed <= cfg.speed[1]
        assert abs(p.pitch_cents - 100.0) <= cfg.pitch_jitter_cents + 0.1
        assert cfg.pad[0] <= p.pad_start <= cfg.pad[1]
        assert cfg.floor_db[0] <= p.floor_db <= cfg.floor_db[1]
        assert p.noise is None or cfg.snr_db[0] <= p.noise[1] <= cfg.snr_db[1]
    share = sum(p.noise is not None for p in draws) / len(draws)
    assert abs(share - cfg.noise_prob) < 0.08
    assert {p.noise[0] for p in draws if p.noise} == set(effects.NOISE_COLOURS)


def test_sox_chain_band_limits_after_resampling() -> None:
    p = effects.draw_perturbation(effects.utterance_rng(0, 0), 1.0, 0.0)
    p = effects.Perturbation(**{**p.__dict__, "band": (300, 3400), "reverb": (20, 50, 50)})
    chain = effects.sox_effects(p)
    assert chain.index("sinc") > chain.index("rate") > chain.index("reverb") > chain.index("speed")
    assert chain[:4] == ["silence", "1", "0.005", "0.1%"]


def test_noise_colours_have_their_spectral_slope() -> None:
    rng = np.random.default_rng(0)
    n = 1 << 15
    low, high = slice(20, 200), slice(4000, 8000)
    ratios = {}
    for colour in effects.NOISE_COLOURS:
        x = effects.coloured_noise(rng, n, colour)
        assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0, rel=1e-6)
        power = np.abs(np.fft.rfft(x)) ** 2
        ratios[colour] = power[low].mean() / power[high].mean()
    assert ratios["white"] < 2 < ratios["pink"] < ratios["brown"]


def test_finish_sets_level_noise_floor_and_snr() -> None:
    t = np.arange(16000) / 16000
    speech = np.concatenate([np.zeros(8000), 0.3 * np.sin(2 * np.pi * 220 * t), np.zeros(8000)])
    base = effects.draw_perturbation(effects.utterance_rng(0, 0), 1.0, 0.0)
    p = effects.Perturbation(**{**base.__dict__, "peak_db": -6.0, "floor_db": 50.0, "noise": None})
    out = effects.finish(speech.astype(np.float32), p, np.random.default_rng(1))
    assert out.dtype == np.int16
    assert np.max(np.abs(out)) / 32767 == pytest.approx(10 ** (-6 / 20), rel=0.02)
    silence = out[:8000].astype(np.float64) / 32767
    floor_db = 20 * np.log10(effects.speech_rms(out[8000:24000] / 32767) / np.sqrt(np.mean(silence**2)))
    assert floor_db == pytest.approx(50.0, abs=2.0)
    assert np.count_nonzero(silence) > 0.9 * len(silence)  # no digital silence
    noisy = effects.Perturbation(**{**p.__dict__, "noise": ("pink", 10.0)})
    out2 = effects.finish(speech.astype(np.float32), noisy, np.random.default_rng(1)).astype(np.float64)
    noise_rms = np.sqrt(np.mean((out2[:8000] / 32767) ** 2))
    snr = 20 * np.log10(effects.speech_rms(out[8000:24000] / 32767) / noise_rms)
    assert snr == pytest.approx(10.0, abs=1.5)
