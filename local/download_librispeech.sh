#!/usr/bin/env bash
# Downloads and unpacks LibriSpeech parts from openslr.org with lhotse (needs internet).
#
#   local/download_librispeech.sh <target-dir> [part ...]
#
# Writes <target-dir>/LibriSpeech/<part>/...; parts already unpacked (lhotse's .completed marker) are
# skipped. Default parts: train-clean-100 dev-clean dev-other test-clean test-other.
# (`lhotse download librispeech` itself only offers all seven parts or mini LibriSpeech.)
set -euo pipefail

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; }
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") usage >&2; exit 1 ;;
esac
target=$1; shift
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(train-clean-100 dev-clean dev-other test-clean test-other)

python - "$target" "${parts[@]}" <<'PY'
import sys
from lhotse.recipes import download_librispeech

download_librispeech(sys.argv[1], dataset_parts=sys.argv[2:])
PY
