#!/usr/bin/env bash
# Optional extras for GPU machines with internet access: k2 and kaldifeat built for the installed torch.
# rnnt-kd runs without them (kd.losses has built-in PyTorch code and uses fast_rnnt when it built); with
# them, kd.losses uses k2 and feature extraction uses kaldifeat, with the same numbers.
#
#   tools/install_extras.sh [--k2] [--kaldifeat]      (default: both)
#
# The wheels are published per torch/CUDA version on the k2-fsa wheel pages; the script asks pip for the
# build matching .venv's torch and stops with the manual command if none exists.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -x .venv/bin/python ] || bash tools/install.sh

want_k2=false; want_kaldifeat=false
[ $# -eq 0 ] && { want_k2=true; want_kaldifeat=true; }
for arg in "$@"; do
  case "$arg" in
    --k2) want_k2=true ;;
    --kaldifeat) want_kaldifeat=true ;;
    *) echo "$0: unknown option $arg" >&2; exit 1 ;;
  esac
done

read -r torch_version cuda_version < <(.venv/bin/python -c \
  'import torch; print(torch.__version__.split("+")[0], torch.version.cuda or "cpu")')
if [ "$cuda_version" = cpu ]; then suffix="cpu"; else suffix="cuda${cuda_version}"; fi
echo "torch $torch_version ($suffix)"

py_tag=$(.venv/bin/python -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')
kind=cpu; [ "$suffix" = cpu ] || kind=cuda

# install_from PKG PAGE: the newest wheel on PAGE built for this torch, CUDA and Python.
install_from() {
  local pkg=$1 page=$2 wheel
  wheel=$(curl -fsSL "$page" | grep -oE "https[^\"]*/${pkg}-[^\"]*(\+|%2B)${suffix}\.torch${torch_version}-${py_tag}-[^\"]*linux[^\"]*\.whl" \
    | sort -V | tail -n 1) || true
  if [ -z "$wheel" ]; then
    echo "No $pkg wheel for torch $torch_version ($suffix, $py_tag) on $page;" >&2
    echo "build $pkg from source following its installation docs." >&2
    return 1
  fi
  .venv/bin/python -m pip install "$wheel"
}
status=0
if $want_k2; then install_from k2 "https://k2-fsa.github.io/k2/$kind.html" || status=1; fi
if $want_kaldifeat; then install_from kaldifeat "https://csukuangfj.github.io/kaldifeat/$kind.html" || status=1; fi
.venv/bin/python -c 'import kd.losses as L; print("kd.losses backend:", L.rnnt_backend())' || true
exit $status
