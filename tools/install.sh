#!/usr/bin/env bash
# Creates .venv/ with everything rnnt-kd needs and installs the Debian packages of the synthetic corpus.
# Idempotent: a second run with nothing to do takes about a second.
#
#   tools/install.sh [--no-apt] [--no-fast-rnnt] [--force]
#
# Environment: TORCH_SPEC (default torch==2.13.0, the CPU wheel). On a machine whose python3 already
# imports torch (e.g. a CUDA build) the venv sees the system site-packages and that torch is kept.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

with_apt=true
with_fast_rnnt=true
force=false
for arg in "$@"; do
  case "$arg" in
    --no-apt) with_apt=false ;;
    --no-fast-rnnt) with_fast_rnnt=false ;;
    --force) force=true ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "$0: unknown option $arg (see --help)" >&2; exit 1 ;;
  esac
done

log() { echo "$(date '+%F %T') [install] $*"; }

apt_packages=(espeak-ng sox libsox-fmt-all flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts)
if $with_apt; then
  missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      log "apt-get install ${missing[*]}"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      log "WARNING: missing Debian packages: ${missing[*]}; run: sudo apt-get install ${missing[*]}"
    fi
  fi
fi

stamp=.venv/.kd-install-stamp
inputs=(pyproject.toml tools/install.sh)
[ -f tools/build_fast_rnnt.sh ] && inputs+=(tools/build_fast_rnnt.sh)
want=$(cat "${inputs[@]}" | sha1sum | cut -c1-16)
if ! $force && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import kd, torch, lhotse" 2>/dev/null; then
  log "environment up to date (.venv)"
  exit 0
fi

if [ ! -x .venv/bin/python ]; then
  if python3 -c "import torch" 2>/dev/null; then
    log "python3 already has torch $(python3 -c 'import torch; print(torch.__version__)'); keeping it"
    python3 -m venv --system-site-packages .venv
  else
    python3 -m venv .venv
  fi
fi
# --no-compile: byte-compiling all of torch costs ~10 s of CPU; Python compiles what it imports, once.
pip=(.venv/bin/python -m pip install -q --no-compile --disable-pip-version-check)

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  log "installing ${TORCH_SPEC:-torch==2.13.0}"
  "${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}"
fi
log "installing rnnt-kd and its dependencies"
"${pip[@]}" -e ".[dev]"

if $with_fast_rnnt && [ -f tools/build_fast_rnnt.sh ]; then
  if ! bash tools/build_fast_rnnt.sh; then
    log "WARNING: fast_rnnt did not build; kd.losses will use its built-in PyTorch code (same numbers)"
  fi
fi

echo "$want" > "$stamp"
log "done: $(.venv/bin/python -c 'import torch, lhotse; print("torch", torch.__version__, "lhotse", lhotse.__version__)')"
