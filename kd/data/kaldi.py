"""Import of a Kaldi data directory, for in-house corpora.

Reads ``wav.scp`` (file paths, relative ones taken from the current directory as in Kaldi, or piped
commands ending in ``|`` whose output soundfile can decode), ``text``, and the optional ``segments`` and
``utt2spk``. Any sample rate and format soundfile reads is accepted; each recording's true rate is probed
and a lhotse resampling transform brings it to 16 kHz, the rate recorded in the manifest, so audio is
converted on the fly when it is read.

Utterances without usable audio (missing file, unreadable file, failing command) or without words in
``text`` are skipped, counted and logged, as Kaldi's ``fix_data_dir.sh`` would drop them.
"""

from __future__ import annotations

import io
import logging
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from lhotse import AudioSource, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.utils import add_durations
from tqdm.auto import tqdm

from kd.data.errors import DataError, MissingFileError
from kd.data.io import manifests_exist, save_manifests

log = logging.getLogger(__name__)

SAMPLING_RATE = 16000
_SHOWN = 5
# A segment may end slightly past its recording (rounding in the tool that wrote it); up to this many
# seconds it is clipped, beyond it the segments file is wrong.
_END_TOLERANCE = 0.1


@dataclass
class _Line:
    key: str
    value: str
    where: str  # "<file>:<line number>"


def read_table(path: Path, min_values: int = 1) -> dict[str, _Line]:
    """Reads a Kaldi ``<key> <value...>`` file; ``min_values`` is the least number of fields after the key.

    Raises:
        DataError: a malformed line or a duplicate key, naming file and line.
    """
    table: dict[str, _Line] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=1)
        value = fields[1].strip() if len(fields) > 1 else ""
        where = f"{path}:{lineno}"
        if len(value.split()) < min_values:
            raise DataError(f"{where}: expected '<id>' followed by {min_values} or more fields, got {line!r}")
        if fields[0] in table:
            raise DataError(
                f"{where}: duplicate id {fields[0]!r} (first at {table[fields[0]].where}); "
                "remove one of the lines"
            )
        table[fields[0]] = _Line(fields[0], value, where)
    return table


def probe_recording(recording_id: str, spec: str) -> Recording | str:
    """A Recording at its native rate for one ``wav.scp`` entry, or the reason it cannot be used."""
    if spec.endswith("|"):
        command = spec[:-1].strip()
        proc = subprocess.run(command, shell=True, capture_output=True)
        if proc.returncode != 0:
            stderr = proc.stderr.decode(errors="replace").strip().splitlines()
            return f"command exited with {proc.returncode}: {stderr[-1] if stderr else command}"
        try:
            with sf.SoundFile(io.BytesIO(proc.stdout)) as f:
                # Piped headers often carry a placeholder length, so count the decoded samples instead.
                samples = f.read(dtype="float32", always_2d=True)
                sampling_rate, channels = f.samplerate, f.channels
        except (sf.LibsndfileError, RuntimeError) as e:
            return f"the command's output is not audio that soundfile can read ({e})"
        source = AudioSource(type="command", channels=list(range(channels)), source=command)
        num_samples = samples.shape[0]
    else:
        if re.search(r"\.ark:\d+$", spec):
            return "Kaldi archive offsets (.ark:N) are not supported; write the audio to files and list those"
        if not Path(spec).is_file():
            return "audio file not found"
        try:
            info = sf.info(spec)
        except (sf.LibsndfileError, RuntimeError) as e:
            return f"soundfile cannot read it ({e})"
        sampling_rate, channels, num_samples = info.samplerate, info.channels, info.frames
        source = AudioSource(type="file", channels=list(range(channels)), source=spec)
    if num_samples == 0:
        return "no audio samples"
    return Recording(
        id=recording_id,
        sources=[source],
        sampling_rate=sampling_rate,
        num_samples=num_samples,
        duration=num_samples / sampling_rate,
    )


def _segments(
    data_dir: Path, recording_ids: list[str], recordings: dict[str, Recording]
) -> list[tuple[str, str, float, float]]:
    """(utterance, recording, start, end) from ``segments``; without it, one utterance per ``wav.scp`` line.

    ``recordings`` holds the usable ones; utterances of the others are listed too, for the caller to count.
    """
    path = data_dir / "segments"
    if not path.is_file():
        return [
            (rid, rid, 0.0, recordings[rid].duration if rid in recordings else 0.0) for rid in recording_ids
        ]
    out = []
    for utt, line in read_table(path, min_values=3).items():
        reco, start_s, end_s = line.value.split()[:3]
        try:
            start, end = float(start_s), float(end_s)
        except ValueError:
            raise DataError(
                f"{line.where}: start and end must be seconds, got {start_s!r} {end_s!r}"
            ) from None
        if reco not in recordings:
            out.append((utt, reco, start, end))  # dropped with its recording, counted by the caller
            continue
        duration = recordings[reco].duration
        if end == -1 or duration < end <= duration + _END_TOLERANCE:
            end = duration
        if not 0 <= start < end <= duration:
            raise DataError(
                f"{line.where}: segment {utt} [{start}, {end}] s is not inside recording {reco} "
                f"({duration:.3f} s); fix the times"
            )
        out.append((utt, reco, start, end))
    return out


def _warn_skipped(data_dir: Path, what: str, items: list[str]) -> None:
    if items:
        log.warning(
            "%s: skipped %d utterance(s) %s, e.g. %s", data_dir, len(items), what, "; ".join(items[:_SHOWN])
        )


def load_kaldi_dir(data_dir: str | Path, num_jobs: int = 1) -> tuple[RecordingSet, SupervisionSet]:
    """Recordings (resampled to 16 kHz) and supervisions of a Kaldi data dir.

    Raises:
        MissingFileError: ``wav.scp`` or ``text`` is missing.
        DataError: malformed files, or no utterance left after the skips.
    """
    data_dir = Path(data_dir)
    for name in ("wav.scp", "text"):
        if not (data_dir / name).is_file():
            raise MissingFileError(
                f"{data_dir / name}: not found; a Kaldi data dir needs wav.scp ('<recording-id> <path or "
                "command |>') and text ('<utterance-id> <words>'), with optional segments and utt2spk"
            )
    wav_scp = read_table(data_dir / "wav.scp")
    texts = read_table(data_dir / "text", min_values=0)
    utt2spk = read_table(data_dir / "utt2spk") if (data_dir / "utt2spk").is_file() else None
    if utt2spk is None:
        log.warning("%s: no utt2spk, using each utterance id as its speaker", data_dir)

    with ThreadPoolExecutor(max(1, num_jobs)) as ex:
        probed = list(
            tqdm(
                ex.map(probe_recording, wav_scp, (line.value for line in wav_scp.values())),
                total=len(wav_scp),
                desc=f"Probing {data_dir.name}",
                leave=False,
            )
        )
    recordings: dict[str, Recording] = {}
    bad_audio: dict[str, str] = {}
    for (rid, line), result in zip(wav_scp.items(), probed):
        if isinstance(result, str):
            bad_audio[rid] = f"{line.where} ({line.value}): {result}"
        else:
            recordings[rid] = (
                result if result.sampling_rate == SAMPLING_RATE else result.resample(SAMPLING_RATE)
            )

    supervisions = []
    skipped_audio, skipped_text = [], []
    for utt, reco, start, end in _segments(data_dir, list(wav_scp), recordings):
        if reco not in recordings:
            skipped_audio.append(f"{utt}: {bad_audio.get(reco, f'recording {reco} is not in wav.scp')}")
            continue
        text = texts.get(utt)
        if text is None or not text.value:
            skipped_text.append(
                f"{utt}: {'no line in text' if text is None else f'empty text at {text.where}'}"
            )
            continue
        supervisions.append(
            SupervisionSegment(
                id=utt,
                recording_id=reco,
                start=start,
                duration=add_durations(end, -start, sampling_rate=SAMPLING_RATE),
                channel=recordings[reco].channel_ids[0],
                speaker=utt2spk[utt].value if utt2spk is not None and utt in utt2spk else utt,
                text=text.value,
            )
        )
    _warn_skipped(data_dir, "without usable audio", skipped_audio)
    _warn_skipped(data_dir, "without a transcript", skipped_text)
    if not supervisions:
        raise DataError(
            f"{data_dir}: no utterance has both readable audio and a transcript (see the warnings)"
        )

    used = {s.recording_id for s in supervisions}
    recording_set = RecordingSet.from_recordings(rec for rid, rec in recordings.items() if rid in used)
    log.info(
        "%s: %d recordings, %d utterances (%d skipped for audio, %d for missing text)",
        data_dir,
        len(recording_set),
        len(supervisions),
        len(skipped_audio),
        len(skipped_text),
    )
    return recording_set, SupervisionSet.from_segments(supervisions)


def prepare_kaldi_manifests(
    data_dir: str | Path,
    part: str,
    output_dir: str | Path,
    prefix: str,
    num_jobs: int = 1,
    force: bool = False,
) -> None:
    """Writes ``<prefix>_{recordings,supervisions}_<part>.jsonl.gz`` (existing ones kept unless ``force``)."""
    if manifests_exist(output_dir, prefix, part) and not force:
        log.info("%s: manifests of part %s exist, skipping", output_dir, part)
        return
    recordings, supervisions = load_kaldi_dir(data_dir, num_jobs)
    save_manifests(recordings, supervisions, output_dir, prefix, part)
