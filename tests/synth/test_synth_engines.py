"""Each installed TTS engine speaks, at the requested rate (espeak-ng is required; flite and festival are
tested when the inventory finds them, as the corpus uses them only then)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import soundfile as sf

from kd.data.synth.engines import SynthesisError, TTSRequest, synthesize
from kd.data.synth.voices import ESPEAK, available_voices

TEXT = "The birch canoe slid on the smooth planks, and the juice of lemons makes fine punch."
VOICES = {}
for _v in available_voices():
    VOICES.setdefault(_v.engine, _v)


def test_espeak_is_installed() -> None:
    assert ESPEAK in VOICES, "espeak-ng is required for the synthetic corpus (tools/install.sh installs it)"


@pytest.mark.parametrize("engine", sorted(VOICES))
def test_engine_speaks_at_the_requested_rate(engine: str, tmp_path: Path) -> None:
    voice = VOICES[engine]
    slow, fast = tmp_path / "slow.wav", tmp_path / "fast.wav"
    # Both in one call: festival runs them in one process, switching its duration stretch in between.
    synthesize(
        [TTSRequest(engine, voice.name, TEXT, 0.8, slow), TTSRequest(engine, voice.name, TEXT, 1.3, fast)],
        tmp_path,
    )
    d_slow, d_fast = sf.info(str(slow)).duration, sf.info(str(fast)).duration
    assert 2.0 < d_fast < d_slow < 15.0
    assert d_slow / d_fast > 1.2


def test_engine_failure_names_the_voice(tmp_path: Path) -> None:
    # espeak-ng exits 0 even when it cannot write its output: the missing file is what gives it away.
    voice = VOICES[ESPEAK].name
    with pytest.raises(SynthesisError, match=re.escape(f"{ESPEAK} voice {voice} wrote no audio")):
        synthesize([TTSRequest(ESPEAK, voice, TEXT, 1.0, tmp_path / "missing-dir" / "x.wav")], tmp_path)
