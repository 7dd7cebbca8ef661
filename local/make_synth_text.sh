#!/usr/bin/env bash
# Regenerates local/data/sentences.txt.gz (and sentences.LICENCES.txt) from Debian packages:
# Jane Austen's six novels (r-cran-janeaustenr), Moby Dick (r-cran-tokenizers), the Harvard sentences
# (r-cran-stringr), WordNet's gloss examples (wordnet-base) and two US founding documents (miscfiles).
# The .debs are only unpacked (dpkg-deb -x), not installed; R is not needed.
#
#   local/make_synth_text.sh [--deb-dir DIR] [--out FILE]
#
# --deb-dir DIR   use .debs already downloaded there instead of running apt-get download
# --out FILE      where to write the list [local/data/sentences.txt.gz]
set -euo pipefail
cd "$(dirname "$0")/.."

deb_dir=""
out=local/data/sentences.txt.gz
while [ $# -gt 0 ]; do
  case "$1" in
    --deb-dir) deb_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown option $1 (see --help)" >&2; exit 1 ;;
  esac
done

python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python

packages="r-cran-janeaustenr r-cran-tokenizers r-cran-stringr wordnet-base miscfiles"
if [ -z "$deb_dir" ]; then
  deb_dir=$(mktemp -d)
  trap 'rm -rf "$deb_dir"' EXIT
  chmod a+rwx "$deb_dir"  # apt's sandbox user must be able to write there
  echo "$0: downloading $packages" >&2
  (cd "$deb_dir" && apt-get download $packages)
fi
"$python" -m kd.data.synth.text --deb-dir "$deb_dir" --out "$out"
echo "$0: wrote $out" >&2
