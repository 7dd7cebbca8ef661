"""The inventory of TTS voices from Debian main, grouped into families, and its run-time availability.

A *family* is the underlying speaker: the same recording (SLT in flite and in festival) or the same espeak-ng
formant set (``Hugo`` and ``Henrique`` differ only in pitch) is one family. Splits are made disjoint by
family so that a test voice is never a re-synthesis of a training voice.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ESPEAK, FLITE, FESTIVAL = "espeak-ng", "flite", "festival"
ENGINES = (ESPEAK, FLITE, FESTIVAL)


@dataclass(frozen=True)
class Voice:
    """One engine voice; the engine is given ``name`` (``en-gb-x-rp+m3``, ``slt``, ``kal_diphone``)."""

    engine: str
    name: str
    family: str
    gender: str  # "M" or "F", as LibriSpeech's SPEAKERS.TXT
    recorded: bool  # built from a human recording (flite, festival) rather than formant rules (espeak-ng)


# espeak-ng English accents (espeak-ng --voices=en, gmw/ files; the mb-* ones need mbrola and are left out).
ESPEAK_ACCENTS = (
    "en-gb",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)

# espeak-ng variants that sound like a person (no whisper, croak, echo, robot or cartoon pitch), as
# variant -> (family, gender). Variants whose formant tables are copies of each other share a family.
ESPEAK_VARIANTS: dict[str, tuple[str, str]] = {
    "m1": ("m1", "M"),
    "m2": ("m2", "M"),
    "m3": ("m3", "M"),
    "m4": ("m4", "M"),
    "m5": ("m5", "M"),
    "m6": ("m6", "M"),
    "m7": ("m7", "M"),
    "m8": ("m8", "M"),
    "Nguyen": ("m8", "M"),
    "f1": ("f1", "F"),
    "f2": ("f2", "F"),
    "f3": ("f3", "F"),
    "f5": ("f5", "F"),
    "f4": ("f4", "F"),
    "aunty": ("f4", "F"),
    "linda": ("f4", "F"),
    "belinda": ("f4", "F"),
    "klatt": ("klatt", "M"),
    "klatt2": ("klatt", "M"),
    "klatt3": ("klatt", "M"),
    "adam": ("klatt6", "M"),
    "benjamin": ("klatt6", "M"),
    "david": ("david", "M"),
    "edward": ("edward", "M"),
    "edward2": ("edward", "M"),
    "Alex": ("Alex", "M"),
    "Mike": ("Alex", "M"),
    "Andrea": ("Andrea", "F"),
    "Annie": ("Annie", "F"),
    "Denis": ("Denis", "M"),
    "Gene": ("Gene", "M"),
    "Gene2": ("Gene", "M"),
    "Hugo": ("Hugo", "M"),
    "Henrique": ("Hugo", "M"),
    "Diogo": ("Hugo", "M"),
    "michel": ("Hugo", "M"),
    "miguel": ("Hugo", "M"),
    "anika": ("anika", "F"),
    "Mario": ("Mario", "M"),
    "Michael": ("Mario", "M"),
    "gustave": ("gustave", "M"),
    "marcelo": ("marcelo", "M"),
    "antonio": ("antonio", "M"),
    "boris": ("boris", "M"),
    "max": ("max", "M"),
    "ed": ("ed", "M"),
    "paul": ("paul", "M"),
    "pedro": ("pedro", "M"),
    "rob": ("robert", "M"),
    "robert": ("robert", "M"),
    "quincy": ("robert", "M"),
    "steph": ("steph", "F"),
    "steph2": ("steph", "F"),
    "steph3": ("steph", "F"),
    "travis": ("travis", "M"),
    "victor": ("victor", "M"),
    "shelby": ("shelby", "F"),
}

# Recorded voices: engine, voice name, family (the recorded speaker), gender.
RECORDED_VOICES: tuple[tuple[str, str, str, str], ...] = (
    (FLITE, "kal16", "KAL", "M"),
    (FLITE, "awb", "AWB", "M"),
    (FLITE, "rms", "RMS", "M"),
    (FLITE, "slt", "SLT", "F"),
    (FESTIVAL, "kal_diphone", "KAL", "M"),
    (FESTIVAL, "ked_diphone", "KED", "M"),
    (FESTIVAL, "cmu_us_slt_arctic_hts", "SLT", "F"),
)


def all_voices() -> list[Voice]:
    """Every voice this project knows, whether or not installed here."""
    voices = [
        Voice(ESPEAK, f"{accent}+{variant}", f"espeak-{family}", gender, False)
        for variant, (family, gender) in ESPEAK_VARIANTS.items()
        for accent in ESPEAK_ACCENTS
    ]
    voices += [Voice(engine, name, family, gender, True) for engine, name, family, gender in RECORDED_VOICES]
    return voices


class NoVoicesError(RuntimeError):
    """No TTS engine or voice is installed."""


def _run(cmd: Sequence[str], timeout: float = 60) -> str:
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout if out.returncode == 0 else ""


def _espeak_available(exe: str) -> tuple[set[str], set[str]]:
    """(accents, variants) espeak-ng offers here."""
    accents = set()
    for line in _run([exe, "--voices=en"]).splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5 and not fields[4].startswith("mb/"):
            accents.add(fields[1])
    m = re.search(r"Data at:\s*(\S+)", _run([exe, "--version"]))
    variants: set[str] = set()
    if m:
        vdir = Path(m.group(1)) / "voices" / "!v"
        if vdir.is_dir():
            variants = {p.name for p in vdir.iterdir()}
    return accents, variants


def _flite_available(exe: str) -> set[str]:
    m = re.search(r"Voices available:(.*)", _run([exe, "-lv"]))
    return set(m.group(1).split()) if m else set()


def _festival_available(exe: str) -> set[str]:
    out = _run([exe, "--batch", "(print (voice.list))"])
    return set(re.findall(r"[A-Za-z0-9_]+", out))


def available_voices(search_path: str | None = None, engines: Sequence[str] = ENGINES) -> list[Voice]:
    """The voices of :func:`all_voices` installed here, in inventory order.

    ``search_path`` replaces ``$PATH`` when looking for the engines (tests use it to simulate a machine with
    none). Absent engines and voices are logged with counts. Raises :class:`NoVoicesError` if none is left.
    """
    known = [v for v in all_voices() if v.engine in engines]
    present: set[tuple[str, str]] = set()
    missing_engines = []
    for engine in engines:
        exe = shutil.which(engine, path=search_path)
        if engine == FESTIVAL:  # voices are found through festival, synthesis runs through it too
            exe = shutil.which("festival", path=search_path)
        if exe is None:
            missing_engines.append(engine)
            continue
        if engine == ESPEAK:
            accents, variants = _espeak_available(exe)
            present |= {
                (ESPEAK, v.name)
                for v in known
                if v.engine == ESPEAK and v.name.split("+")[0] in accents and v.name.split("+")[1] in variants
            }
        elif engine == FLITE:
            names = _flite_available(exe)
            present |= {(FLITE, v.name) for v in known if v.engine == FLITE and v.name in names}
        elif engine == FESTIVAL:
            names = _festival_available(exe)
            present |= {(FESTIVAL, v.name) for v in known if v.engine == FESTIVAL and v.name in names}
    voices = [v for v in known if (v.engine, v.name) in present]
    skipped = Counter(v.engine for v in known if (v.engine, v.name) not in present)
    for engine, n in sorted(skipped.items()):
        why = "engine not found on PATH" if engine in missing_engines else "voice not installed"
        log.info("skipping %d %s voices (%s)", n, engine, why)
    if not voices:
        raise NoVoicesError(
            "no TTS voice found: install the Debian packages espeak-ng (and optionally flite, festival, "
            "festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts), e.g. via tools/install.sh"
        )
    found = Counter(v.engine for v in voices)
    log.info(
        "%d voices in %d families: %s",
        len(voices),
        len({v.family for v in voices}),
        ", ".join(f"{engine} {n}" for engine, n in sorted(found.items())),
    )
    return voices


def families(voices: Sequence[Voice]) -> dict[str, list[Voice]]:
    """Voices grouped by family, families and voices in inventory order."""
    out: dict[str, list[Voice]] = {}
    for v in voices:
        out.setdefault(v.family, []).append(v)
    return out
