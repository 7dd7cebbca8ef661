"""The corpus plan: which family goes to which split, the speakers, and what each of them reads.

Everything here is decided in one process from ``random.Random(seed)`` before any audio is made, so the plan
(and with it every utterance id, transcript and per-utterance seed) is a function of the seed, the size,
the sentence list and the installed voices only.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kd.data.synth.text import Sentence
from kd.data.synth.voices import Voice, families

TRAIN, DEV, TEST, UNLABELLED = "train", "dev", "test", "unlabelled"
SPLITS = (TRAIN, DEV, TEST, UNLABELLED)
LABELLED_SPLITS = (TRAIN, DEV, TEST)  # the dataset_parts for lhotse.recipes.prepare_librispeech
# Utterance length ~ SECONDS_PER_WORD * words / rate + MEAN_PADDING (least squares on the default build;
# espeak-ng is a little faster than flite and festival); only used to deal text until a split's hours are
# reached.
SECONDS_PER_WORD = 0.28
MEAN_PADDING = 0.58
SPEAKER_ID_START = 100
CHAPTER_ID_START = 10000
TEXT_BLOCK = 8  # consecutive sentences kept together, so chapters read like passages
# Probabilities of reading 1, 2 or 3 consecutive sentences as one utterance: book sentences are short
# (about 3 s spoken), LibriSpeech's utterances about 12 s.
JOIN_WEIGHTS = (0.35, 0.35, 0.3)


@dataclass(frozen=True)
class CorpusSize:
    """How much to make: hours and speakers per split, and which sentences qualify."""

    hours: dict[str, float]
    speakers: dict[str, int]
    max_vocab: int | None = 2000
    max_words: int = 24  # longest sentence used
    max_sentences_per_utterance: int = 3
    max_words_per_utterance: int = 45
    held_out_families: float = 0.1  # share of families (per kind: formant / recorded) for each of dev, test

    def __post_init__(self) -> None:
        for name in ("hours", "speakers"):
            missing = [s for s in SPLITS if s not in getattr(self, name)]
            if missing:
                raise ValueError(f"CorpusSize.{name} lacks splits {missing}")
        for s in SPLITS:
            if self.hours[s] <= 0 or self.speakers[s] < 1:
                raise ValueError(
                    f"split {s}: hours must be > 0 and speakers >= 1, got "
                    f"{self.hours[s]} h, {self.speakers[s]} speakers"
                )

    def scaled(self, hours: float | None = None, num_speakers: int | None = None) -> CorpusSize:
        """The same proportions with another total of hours and/or of speakers."""
        new_hours, new_speakers = dict(self.hours), dict(self.speakers)
        if hours is not None:
            total = sum(self.hours.values())
            new_hours = {s: h * hours / total for s, h in self.hours.items()}
        if num_speakers is not None:
            total = sum(self.speakers.values())
            new_speakers = {s: max(1, round(n * num_speakers / total)) for s, n in self.speakers.items()}
        return dataclasses.replace(self, hours=new_hours, speakers=new_speakers)


SIZES: dict[str, CorpusSize] = {
    # Builds in seconds: about 60 short utterances over the four splits.
    "test": CorpusSize(
        hours={TRAIN: 0.022, DEV: 0.006, TEST: 0.006, UNLABELLED: 0.008},
        speakers={TRAIN: 4, DEV: 2, TEST: 2, UNLABELLED: 2},
        max_vocab=1000,
        max_words=10,
        max_sentences_per_utterance=1,
        held_out_families=0.05,
    ),
    "default": CorpusSize(
        hours={TRAIN: 2.0, DEV: 0.2, TEST: 0.2, UNLABELLED: 1.0},
        speakers={TRAIN: 120, DEV: 16, TEST: 16, UNLABELLED: 40},
    ),
    # One sentence of at most 14 words per utterance (2.6 s on average), from the 1,000 most common words:
    # easier text, but the teacher's blank plateau lasts as many updates as on the default (RESULTS.md).
    "short": CorpusSize(
        hours={TRAIN: 1.5, DEV: 0.15, TEST: 0.15, UNLABELLED: 0.75},
        speakers={TRAIN: 90, DEV: 12, TEST: 12, UNLABELLED: 30},
        max_vocab=1000,
        max_words=14,
        max_sentences_per_utterance=1,
    ),
}


@dataclass(frozen=True)
class Speaker:
    """One corpus speaker: a voice with a fixed speaking rate and pitch shift."""

    id: int
    split: str
    voice: Voice
    rate: float  # engine speaking-rate factor (1 = the engine's default)
    pitch_cents: float  # fixed sox pitch shift


@dataclass(frozen=True)
class Utterance:
    """One flac: ``index`` is its position in the plan and seeds its random choices."""

    index: int
    speaker: Speaker
    chapter: int
    number: int
    text: str  # what the engine reads (one to three sentences)
    sentences: tuple[str, ...]  # the transcripts of those sentences

    @property
    def transcript(self) -> str:
        return " ".join(self.sentences)

    @property
    def id(self) -> str:
        return f"{self.speaker.id}-{self.chapter}-{self.number:04d}"

    @property
    def split(self) -> str:
        return self.speaker.split

    def relpath(self) -> Path:
        return Path(self.split) / str(self.speaker.id) / str(self.chapter) / f"{self.id}.flac"


@dataclass
class CorpusPlan:
    speakers: list[Speaker]
    utterances: list[Utterance]
    family_split: dict[str, str]  # family -> train / dev / test (unlabelled speakers use train families)
    sentences_available: int = 0
    sentences_used: int = 0
    chapters: dict[tuple[int, int], list[Utterance]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for u in self.utterances:
            self.chapters.setdefault((u.speaker.id, u.chapter), []).append(u)


class NotEnoughTextError(ValueError):
    """The size asks for more sentences than the list offers."""


def assign_families(voices: Sequence[Voice], rng: random.Random, held_out: float) -> dict[str, str]:
    """Family -> split. Formant and recorded families are dealt separately so dev and test get some of each
    kind when there are enough (at least 3 families of that kind)."""
    by_family = families(voices)
    out: dict[str, str] = {}
    for recorded in (False, True):
        names = sorted(f for f, vs in by_family.items() if vs[0].recorded == recorded)
        rng.shuffle(names)
        n_held = max(1, round(held_out * len(names))) if len(names) >= 3 else 0
        for i, name in enumerate(names):
            out[name] = DEV if i < n_held else TEST if i < 2 * n_held else TRAIN
    for split in (DEV, TEST):
        if split not in out.values():
            raise ValueError(
                f"too few voice families ({len(by_family)}) to hold some out for {split}: "
                "install more voices (espeak-ng provides dozens)"
            )
    return out


def make_speakers(
    voices: Sequence[Voice], family_split: dict[str, str], size: CorpusSize, rng: random.Random
) -> list[Speaker]:
    """Speakers per split, dealt round-robin over the split's families so each family is used evenly."""
    by_family = families(voices)
    speakers = []
    next_id = SPEAKER_ID_START
    for split in SPLITS:
        pool_split = TRAIN if split == UNLABELLED else split
        fams = sorted(f for f, s in family_split.items() if s == pool_split)
        rng.shuffle(fams)
        voice_cycles = {f: rng.sample(by_family[f], len(by_family[f])) for f in fams}
        for i in range(size.speakers[split]):
            fam = fams[i % len(fams)]
            cycle = voice_cycles[fam]
            voice = cycle[(i // len(fams)) % len(cycle)]
            rate_range, pitch_range = ((0.9, 1.15), 200.0) if voice.recorded else ((0.85, 1.2), 250.0)
            speakers.append(
                Speaker(
                    id=next_id,
                    split=split,
                    voice=voice,
                    rate=round(rng.uniform(*rate_range), 3),
                    pitch_cents=round(rng.uniform(-pitch_range, pitch_range), 1),
                )
            )
            next_id += 1
    return speakers


def estimated_seconds(words: int, rate: float) -> float:
    return words * SECONDS_PER_WORD / rate + MEAN_PADDING


def _take_sentences(stream: Sequence[Sentence], pos: int, k: int, max_words: int) -> list[Sentence]:
    """Up to ``k`` consecutive sentences from ``pos`` (at least one), within ``max_words`` words in all."""
    chosen = [stream[pos]]
    words = len(stream[pos].transcript.split())
    while len(chosen) < k and pos + len(chosen) < len(stream):
        n = len(stream[pos + len(chosen)].transcript.split())
        if words + n > max_words:
            break
        chosen.append(stream[pos + len(chosen)])
        words += n
    return chosen


def make_plan(
    sentences: Sequence[Sentence], voices: Sequence[Voice], size: CorpusSize, seed: int
) -> CorpusPlan:
    """Deal text to speakers until each split's hours (estimated from word counts) are reached.

    ``sentences`` are the already filtered pool in document order; blocks of consecutive sentences are
    shuffled and read in turn, so no sentence is spoken twice and the splits share no text.
    """
    rng = random.Random(seed)
    family_split = assign_families(voices, rng, size.held_out_families)
    speakers = make_speakers(voices, family_split, size, rng)
    pool = [s for s in sentences if len(s.transcript.split()) <= size.max_words]
    blocks = [pool[i : i + TEXT_BLOCK] for i in range(0, len(pool), TEXT_BLOCK)]
    rng.shuffle(blocks)
    stream = [s for block in blocks for s in block]
    pos = 0
    utterances: list[Utterance] = []
    next_chapter = CHAPTER_ID_START
    for split in SPLITS:
        split_speakers = [s for s in speakers if s.split == split]
        budget = size.hours[split] * 3600 / len(split_speakers)
        for spk in split_speakers:
            n_chapters = 1 if split in (DEV, TEST) or budget < 120 else rng.choice((1, 2))
            for _ in range(n_chapters):
                chapter, next_chapter = next_chapter, next_chapter + 1
                spent, number = 0.0, 0
                while True:
                    if pos >= len(stream):
                        raise NotEnoughTextError(
                            f"the sentence list ran out after {len(utterances)} utterances ({len(stream)} "
                            f"sentences of <= {size.max_words} words within the {size.max_vocab} most common "
                            "words): ask for fewer hours or raise --max-vocab (0 = no limit)"
                        )
                    k = min(rng.choices((1, 2, 3), weights=JOIN_WEIGHTS)[0], size.max_sentences_per_utterance)
                    chosen = _take_sentences(stream, pos, k, size.max_words_per_utterance)
                    est = estimated_seconds(sum(len(s.transcript.split()) for s in chosen), spk.rate)
                    # Stop at the length closest to the chapter's share of the budget.
                    if number > 0 and spent + est - budget / n_chapters > budget / n_chapters - spent:
                        break
                    pos += len(chosen)
                    utterances.append(
                        Utterance(
                            len(utterances),
                            spk,
                            chapter,
                            number,
                            " ".join(s.text for s in chosen),
                            tuple(s.transcript for s in chosen),
                        )
                    )
                    spent += est
                    number += 1
    return CorpusPlan(speakers, utterances, family_split, len(stream), pos)


def oov_rate(plan: CorpusPlan, split: str, reference: str = TRAIN) -> float:
    """Share of ``split``'s running words never seen in ``reference``'s transcripts."""
    seen = {w for u in plan.utterances if u.split == reference for w in u.transcript.split()}
    words = [w for u in plan.utterances if u.split == split for w in u.transcript.split()]
    return sum(w not in seen for w in words) / max(1, len(words))


def lm_sentences(sentences: Sequence[Sentence], plan: CorpusPlan) -> list[str]:
    """The LM's training text: each distinct transcript of ``sentences`` once, in list order, except the
    sentences read in dev, test and unlabelled, as LibriSpeech's LM text leaves out its test books."""
    held_out = {t for u in plan.utterances if u.split != TRAIN for t in u.sentences}
    out, seen = [], set()
    for s in sentences:
        if s.transcript not in seen and s.transcript not in held_out:
            out.append(s.transcript)
        seen.add(s.transcript)
    return out
