# Environment for the recipe stages; sourced by run.sh.
KD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export KD_ROOT
if [ -x "$KD_ROOT/.venv/bin/python" ]; then
  export PATH="$KD_ROOT/.venv/bin:$PATH"
fi
export PYTHONPATH="$KD_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# Two threads per process keeps data-parallel jobs from oversubscribing small machines.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc 2>/dev/null || echo 1)}
export MKL_NUM_THREADS=$OMP_NUM_THREADS
