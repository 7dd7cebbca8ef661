"""Running the TTS engines: text in, a wav file at the engine's own sample rate out.

espeak-ng and flite start in milliseconds and run once per utterance; festival spends 0.3-0.5 s starting, so
all festival requests of a batch go through one process and one Scheme script.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kd.data.synth.voices import ESPEAK, FESTIVAL, FLITE

ESPEAK_DEFAULT_WPM = 175  # espeak-ng's own default speaking rate, words per minute


class SynthesisError(RuntimeError):
    """An engine failed on one request."""


@dataclass(frozen=True)
class TTSRequest:
    """One utterance for an engine; ``rate`` > 1 speaks faster (1 = the engine's default rate)."""

    engine: str
    voice: str
    text: str
    rate: float
    out_wav: Path


def _run(cmd: Sequence[str], stdin: str | None = None, timeout: float = 300) -> None:
    try:
        out = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SynthesisError(f"{' '.join(cmd)}: {e}") from e
    if out.returncode != 0:
        raise SynthesisError(f"{' '.join(cmd)} exited with {out.returncode}: {out.stderr.strip()[-500:]}")


def _espeak(req: TTSRequest) -> None:
    wpm = max(80, min(450, round(ESPEAK_DEFAULT_WPM * req.rate)))
    _run(["espeak-ng", "-v", req.voice, "-s", str(wpm), "-w", str(req.out_wav), "--stdin"], stdin=req.text)


def _flite(req: TTSRequest) -> None:
    text_file = req.out_wav.with_suffix(".txt")
    text_file.write_text(req.text + "\n")
    try:
        _run(
            [
                "flite",
                "-voice",
                req.voice,
                "--setf",
                f"duration_stretch={1.0 / req.rate:.4f}",
                "-f",
                str(text_file),
                "-o",
                str(req.out_wav),
            ]
        )
    finally:
        text_file.unlink(missing_ok=True)


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _festival(requests: Sequence[TTSRequest], workdir: Path) -> None:
    """One festival process for all requests; the voice is switched only when it changes."""
    lines = []
    current = None
    for req in requests:
        if req.voice != current:
            lines.append(f"(voice_{req.voice})")
            current = req.voice
        lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / req.rate:.4f})")
        lines.append(
            f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(req.text)})) "
            f"{_scheme_string(str(req.out_wav))} 'riff)"
        )
    script = workdir / "festival-batch.scm"
    script.write_text("\n".join(lines) + "\n")
    try:
        _run(["festival", "-b", str(script)], timeout=60 + 30 * len(requests))
    finally:
        script.unlink(missing_ok=True)


def synthesize(requests: Sequence[TTSRequest], workdir: Path) -> None:
    """Write each request's ``out_wav``. Raises :class:`SynthesisError` naming the engine and voice."""
    festival = [r for r in requests if r.engine == FESTIVAL]
    for req in requests:
        if req.engine == ESPEAK:
            _espeak(req)
        elif req.engine == FLITE:
            _flite(req)
        elif req.engine != FESTIVAL:
            raise ValueError(f"unknown TTS engine {req.engine!r}")
    if festival:
        _festival(festival, workdir)
    for req in requests:
        if not req.out_wav.is_file() or req.out_wav.stat().st_size <= 44:
            raise SynthesisError(f"{req.engine} voice {req.voice} wrote no audio for {req.text!r}")


def engine_versions() -> dict[str, str]:
    """Versions of the engines and sox found on PATH (recorded in corpus.json: audio bytes depend on them)."""
    probes = {
        ESPEAK: ["espeak-ng", "--version"],
        FLITE: ["flite", "--version"],
        FESTIVAL: ["festival", "--version"],
        "sox": ["sox", "--version"],
    }
    out = {}
    for name, cmd in probes.items():
        if shutil.which(cmd[0]) is None:
            continue
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        text = (res.stdout + res.stderr).strip().splitlines()
        out[name] = " ".join(line.strip() for line in text if line.strip())[:200]
    return out
