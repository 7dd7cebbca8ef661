"""Per-utterance acoustic perturbation: the sox chain, level, noise floor and additive noise.

Every random value of an utterance is drawn by :func:`draw_perturbation` from a generator seeded with
(corpus seed, utterance index), so the audio does not depend on which worker made it or in which order.
sox writes 32-bit float (no dither, hence no hidden randomness); levels and noise are applied with numpy and
the result is quantised to 16 bits once.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
NOISE_COLOURS = ("white", "pink", "brown")
SOX_RETRIES = 5


@dataclass(frozen=True)
class Perturbation:
    """The random choices for one utterance (recorded so a build can be inspected or reproduced)."""

    rate: float  # engine speaking-rate factor for this utterance (speaker's base x jitter)
    speed: float  # sox speed factor (tempo and pitch together)
    pitch_cents: float  # sox pitch shift (speaker's base + jitter)
    pad_start: float  # seconds of silence put back before the speech after trimming
    pad_end: float
    reverb: tuple[float, float, float] | None  # sox reverb: reverberance %, HF damping %, room scale %
    band: tuple[int, int] | None  # band-limit after resampling, Hz (sinc low-high)
    peak_db: float  # peak level of the speech, dBFS
    floor_db: float  # noise floor, dB below the speech level
    noise: tuple[str, float] | None  # additive noise colour and SNR in dB


@dataclass(frozen=True)
class PerturbationConfig:
    """Ranges of :class:`Perturbation` values; probabilities are per utterance."""

    rate_jitter: float = 0.08
    speed: tuple[float, float] = (0.92, 1.08)
    pitch_jitter_cents: float = 80.0
    pad: tuple[float, float] = (0.05, 0.6)
    reverb_prob: float = 0.15
    band_prob: float = 0.15
    peak_db: tuple[float, float] = (-18.0, -1.0)
    floor_db: tuple[float, float] = (45.0, 60.0)
    noise_prob: float = 0.25
    snr_db: tuple[float, float] = (8.0, 30.0)


def utterance_rng(seed: int, index: int) -> np.random.Generator:
    """The generator for utterance ``index`` of a corpus built with ``seed``."""
    return np.random.default_rng([seed, index])


def draw_perturbation(
    rng: np.random.Generator,
    base_rate: float,
    base_pitch_cents: float,
    cfg: PerturbationConfig = PerturbationConfig(),
) -> Perturbation:
    """Draw one utterance's perturbation. Always the same number of draws, so that each value keeps its
    position in the stream whatever the probabilities say."""
    u = rng.random(18)

    def between(x: float, lo_hi: tuple[float, float]) -> float:
        return float(lo_hi[0] + x * (lo_hi[1] - lo_hi[0]))

    reverb = None
    if u[5] < cfg.reverb_prob:
        reverb = (
            round(between(u[6], (10, 60)), 1),
            round(between(u[7], (20, 80)), 1),
            round(between(u[8], (20, 90)), 1),
        )
    band = None
    if u[9] < cfg.band_prob:
        # Telephone-like or a softer low-pass, both after resampling to 16 kHz.
        band = (300, 3400)
        if u[10] >= 0.5:
            band = (int(between(u[16], (60, 150))), int(between(u[17], (5000, 7600))))
    noise = None
    if u[13] < cfg.noise_prob:
        noise = (
            NOISE_COLOURS[int(u[14] * len(NOISE_COLOURS)) % len(NOISE_COLOURS)],
            round(between(u[15], cfg.snr_db), 2),
        )
    return Perturbation(
        rate=round(base_rate * (1 + cfg.rate_jitter * (2 * u[0] - 1)), 4),
        speed=round(between(u[1], cfg.speed), 4),
        pitch_cents=round(base_pitch_cents + cfg.pitch_jitter_cents * (2 * u[2] - 1), 1),
        pad_start=round(between(u[3], cfg.pad), 3),
        pad_end=round(between(u[4], cfg.pad), 3),
        reverb=reverb,
        band=band,
        peak_db=round(between(u[11], cfg.peak_db), 2),
        floor_db=round(between(u[12], cfg.floor_db), 2),
        noise=noise,
    )


def sox_effects(p: Perturbation) -> list[str]:
    """The sox effect chain: trim silence at both ends, pad, speed, pitch, reverb, resample, band-limit."""
    trim = ["silence", "1", "0.005", "0.1%"]
    chain = [
        *trim,
        "reverse",
        *trim,
        "reverse",
        "pad",
        f"{p.pad_start}",
        f"{p.pad_end}",
        "speed",
        f"{p.speed}",
    ]
    if abs(p.pitch_cents) >= 1:
        chain += ["pitch", f"{p.pitch_cents}"]
    if p.reverb is not None:
        chain += ["reverb", *(f"{v}" for v in p.reverb)]
    chain += ["rate", "-h", str(SAMPLE_RATE)]
    if p.band is not None:  # sinc must come after rate, or the resampler undoes it
        chain += ["sinc", f"{p.band[0]}-{p.band[1]}"]
    return chain


def run_sox(in_wav: Path, p: Perturbation) -> np.ndarray:
    """Apply :func:`sox_effects`; returns float32 mono samples at 16 kHz, shape (N,).

    sox 14.4.2 crashes on rare exact speed/pitch pairs (about 1 in 1,600): each retry nudges them by a
    deterministic amount, so a rebuild takes the same path.
    """
    errors = []
    for attempt in range(SOX_RETRIES):
        q = (
            p
            if attempt == 0
            else dataclasses.replace(
                p,
                speed=round(p.speed * (1 + 0.0013 * attempt), 4),
                pitch_cents=round(p.pitch_cents + 1.7 * attempt, 1),
            )
        )
        cmd = [
            "sox",
            "-D",
            "-V1",
            str(in_wav),
            "-t",
            "raw",
            "-e",
            "floating-point",
            "-b",
            "32",
            "-c",
            "1",
            "-r",
            str(SAMPLE_RATE),
            "-",
            *sox_effects(q),
        ]
        res = subprocess.run(cmd, capture_output=True, timeout=300)
        if res.returncode == 0 and len(res.stdout) >= 4 * SAMPLE_RATE // 10:
            if attempt:
                log.info(
                    "sox succeeded on %s after %d retries (speed %s, pitch %s)",
                    in_wav,
                    attempt,
                    q.speed,
                    q.pitch_cents,
                )
            return np.frombuffer(res.stdout, dtype="<f4").astype(np.float32)
        errors.append(f"rc={res.returncode} {res.stderr.decode(errors='replace').strip()[-200:]}")
    raise RuntimeError(f"sox failed {SOX_RETRIES} times on {in_wav}: {'; '.join(errors)}")


def speech_rms(x: np.ndarray, frame: int = 400) -> float:
    """RMS over frames within 40 dB of the loudest frame (pauses and padding do not count as speech)."""
    n = len(x) // frame
    if n == 0:
        return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12)
    power = np.mean(x[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1)
    active = power >= power.max() * 1e-4
    return float(np.sqrt(power[active].mean()) + 1e-12)


def coloured_noise(rng: np.random.Generator, n: int, colour: str) -> np.ndarray:
    """Unit-RMS noise of shape (n,): white, pink (1/f power) or brown (1/f^2 power)."""
    white = rng.standard_normal(n)
    if colour == "white":
        noise = white
    elif colour in ("pink", "brown"):
        spectrum = np.fft.rfft(white)
        f = np.arange(len(spectrum), dtype=np.float64)
        f[0] = 1.0
        spectrum /= np.sqrt(f) if colour == "pink" else f
        spectrum[0] = 0.0  # no DC offset
        noise = np.fft.irfft(spectrum, n)
    else:
        raise ValueError(f"unknown noise colour {colour!r}, expected one of {NOISE_COLOURS}")
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def finish(x: np.ndarray, p: Perturbation, rng: np.random.Generator) -> np.ndarray:
    """Set the level, add the noise floor (no digital silence) and optional noise; int16 samples (N,)."""
    x = x.astype(np.float64)
    peak = np.max(np.abs(x)) + 1e-12
    x *= 10 ** (p.peak_db / 20) / peak
    level = speech_rms(x)
    x += coloured_noise(rng, len(x), "white") * level * 10 ** (-p.floor_db / 20)
    if p.noise is not None:
        colour, snr = p.noise
        x += coloured_noise(rng, len(x), colour) * level * 10 ** (-snr / 20)
    peak = np.max(np.abs(x))
    if peak > 0.99:
        x *= 0.99 / peak
    return np.round(x * 32767).astype(np.int16)
