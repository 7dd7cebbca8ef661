"""Speed-perturbed copies of a part, with stored features (Kaldi-style 0.9 / 1.1, as icefall's recipes).

``<fbank-dir>/<prefix>_cuts_<part>_sp.jsonl.gz`` holds the part's cuts, their features unchanged, followed by
one copy per factor (cut ids ``<id>_sp<factor>``, lhotse's naming) whose audio is resampled by lhotse and whose
features are stored under ``<fbank-dir>/<prefix>_feats_<part>_sp/``. Storing them keeps a training epoch as
cheap per frame as on the part itself; a speed factor f scales the spectral envelope by f, so the copies
also show the model other vocal-tract lengths.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from lhotse import CutSet

from kd.data.errors import DataError
from kd.data.features import (
    CHUNKS_PER_JOB,
    ExtractorKind,
    extract_features,
    feature_pool,
    make_fbank_extractor,
)
from kd.data.io import atomic_path, cuts_path, feats_dir, load_cuts

log = logging.getLogger(__name__)

SP_SUFFIX = "_sp"
_SP_ID = re.compile(r"_sp(\d+(?:\.\d+)?)$")  # lhotse's id of a copy: <id>_sp<factor>


def perturbed_part(part: str) -> str:
    """The name of the part that holds ``part`` and its speed-perturbed copies."""
    return part + SP_SUFFIX


def stored_factors(path: str | Path) -> set[float]:
    """The speed factors of the copies in a ``<part>_sp`` cuts manifest, read from their cut ids."""
    return {float(m.group(1)) for cut_id in load_cuts(path).ids if (m := _SP_ID.search(cut_id))}


def speed_perturb_part(
    fbank_dir: str | Path,
    prefix: str,
    part: str,
    factors: Sequence[float],
    num_jobs: int = 1,
    extractor: ExtractorKind = "auto",
    force: bool = False,
) -> Path:
    """Writes the cuts of ``part`` plus a speed-perturbed copy per factor, all with features.

    The part's own cuts file (with features, from :func:`kd.data.features.compute_fbank`) is the input, so
    joined parts (LibriSpeech's train-960) work too. An existing output is kept unless ``force``.

    Returns:
        The path of the written (or kept) cuts manifest.

    Raises:
        DataError: for no factors, a factor that is not positive or is 1, or cuts without a recording.
    """
    if not factors:
        raise DataError("no speed factors given (e.g. 0.9 1.1)")
    bad = [f for f in factors if f <= 0 or f == 1]
    if bad:
        raise DataError(f"speed factors must be positive and not 1 (the part itself is kept), got {bad}")
    source = cuts_path(fbank_dir, prefix, part)
    out_part = perturbed_part(part)
    out = cuts_path(fbank_dir, prefix, out_part)
    if out.is_file() and not force:
        found = stored_factors(out)
        if found != set(factors):
            raise DataError(
                f"{out} holds copies at speeds {sorted(found)}, not {sorted(set(factors))}; "
                "rerun with --force to replace them"
            )
        log.info("%s exists, skipping the speed perturbation of part %s", out, part)
        return out
    cuts = load_cuts(source).to_eager()
    no_audio = [c.id for c in cuts if not c.has_recording]
    if no_audio:
        raise DataError(
            f"{source}: {len(no_audio)} cuts have no recording to perturb (e.g. {no_audio[0]}); "
            "speed perturbation needs the cuts that compute_fbank writes from recordings"
        )
    copies = CutSet.from_cuts(c.drop_features().perturb_speed(f) for f in factors for c in cuts)
    storage = feats_dir(fbank_dir, prefix, out_part)
    # Without the cuts file the archives are from an interrupted run: nothing refers to them.
    shutil.rmtree(storage, ignore_errors=True)
    with feature_pool(num_jobs) as executor:
        with_feats = extract_features(
            copies,
            make_fbank_extractor(extractor),
            storage,
            executor,
            max(1, num_jobs) * CHUNKS_PER_JOB,
            desc=f"fbank {prefix} {part} speed {' '.join(map(str, factors))}",
        )
    combined = cuts + with_feats
    with atomic_path(out) as tmp:
        combined.to_file(tmp)
    log.info(
        "%s: %d cuts, %.2f h (%s and speeds %s)",
        out,
        len(combined),
        sum(c.duration for c in combined) / 3600,
        part,
        ", ".join(map(str, factors)),
    )
    return out
