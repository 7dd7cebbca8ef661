#!/usr/bin/env bash
# Builds fast_rnnt==1.3 (the k2 team's standalone RNN-T losses; CPU only) from its sdist into .venv.
# PyPI has no wheel for it, and its CMake tree fetches pybind11 from GitHub; we hand CMake the unpacked
# pybind11 sdist instead, so the build needs nothing but PyPI. kd.losses uses fast_rnnt when it imports
# and its own PyTorch code otherwise, so a failure here costs speed, not correctness.
#
#   tools/build_fast_rnnt.sh [--force]
#
# Idempotent: returns at once when `import fast_rnnt` already works (unless --force). Exits non-zero on
# failure (tools/install.sh then falls back to the built-in code). Environment: PYBIND11_VERSION
# (default 3.0.4), BUILD_JOBS (default: number of CPUs).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

force=false
for arg in "$@"; do
  case "$arg" in
    --force) force=true ;;
    -h|--help) sed -n '2,11p' "$root/tools/build_fast_rnnt.sh"; exit 0 ;;
    *) echo "$0: unknown option $arg (see --help)" >&2; exit 1 ;;
  esac
done

log() { echo "$(date '+%F %T') [build_fast_rnnt] $*"; }

py=.venv/bin/python
fast_rnnt_version=1.3
pybind11_version=${PYBIND11_VERSION:-3.0.4}
jobs=${BUILD_JOBS:-$(nproc)}
work=tools/build/fast_rnnt
logfile=$work/build.log

if [ ! -x "$py" ]; then
  log "ERROR: $root/$py not found; create the environment first with tools/install.sh" >&2
  exit 1
fi
if ! $force && "$py" -c "import fast_rnnt" 2>/dev/null; then
  log "fast_rnnt already importable; nothing to do"
  exit 0
fi

for tool in cmake make c++; do
  if ! command -v "$tool" > /dev/null; then
    log "ERROR: $tool not found; fast_rnnt needs cmake, make and a C++17 compiler" \
      "(Debian: apt-get install cmake build-essential)" >&2
    exit 1
  fi
done

mkdir -p "$work/sdist"
: > "$logfile"
fail() {
  log "ERROR: $1 (last lines of $root/$logfile follow)" >&2
  tail -n 25 "$logfile" >&2
  exit 1
}

fetch_sdist() {  # $1 = package, $2 = version
  local f
  f=$(ls "$work/sdist/$1-$2".tar.gz 2>/dev/null || true)
  if [ -z "$f" ]; then
    log "downloading the $1==$2 sdist"
    "$py" -m pip download -q --disable-pip-version-check --no-binary "$1" --no-deps "$1==$2" \
      -d "$work/sdist" >> "$logfile" 2>&1 || fail "could not download the $1==$2 sdist from PyPI"
  fi
}
fetch_sdist fast_rnnt "$fast_rnnt_version"
fetch_sdist pybind11 "$pybind11_version"

pybind11_dir=$root/$work/pybind11-$pybind11_version
if [ ! -f "$pybind11_dir/CMakeLists.txt" ]; then
  tar -xzf "$work/sdist/pybind11-$pybind11_version.tar.gz" -C "$work" || fail "could not unpack pybind11"
fi

python_include=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
# C++17: torch 2.x headers need it (fast_rnnt defaults to 14). FETCHCONTENT_* makes CMake use the
# unpacked pybind11 instead of downloading it. CUDA off: this script is for CPU machines; GPU users
# install k2 (tools/install.sh prints how).
export FT_CMAKE_ARGS="-DCMAKE_BUILD_TYPE=Release -DFT_BUILD_TESTS=OFF -DFT_WITH_CUDA=OFF \
-DCMAKE_CXX_STANDARD=17 -DPYTHON_INCLUDE_DIRS=$python_include -DFETCHCONTENT_FULLY_DISCONNECTED=ON \
-DFETCHCONTENT_SOURCE_DIR_PYBIND11=$pybind11_dir"
export FT_MAKE_ARGS="-j$jobs"

log "building fast_rnnt==$fast_rnnt_version (pybind11 $pybind11_version, $jobs jobs; log: $logfile)"
start=$(date +%s)
"$py" -m pip install -v --disable-pip-version-check --no-build-isolation --no-deps \
  "$work/sdist/fast_rnnt-$fast_rnnt_version.tar.gz" >> "$logfile" 2>&1 || fail "the fast_rnnt build failed"

# A smoke test through the compiled kernel: a build that imports but cannot run is a failure too.
"$py" - >> "$logfile" 2>&1 <<'EOF' || fail "fast_rnnt installed but its smoke test failed"
import torch
import fast_rnnt

px = torch.zeros(1, 2, 4, dtype=torch.float64)
py = torch.zeros(1, 3, 3, dtype=torch.float64)
score = fast_rnnt.mutual_information_recursion(px, py)
assert torch.isfinite(score).all(), score
EOF
log "fast_rnnt $fast_rnnt_version built and installed in $(( $(date +%s) - start )) s"
