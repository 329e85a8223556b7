#!/usr/bin/env bash
# The GPU check in one command: bench/gpu/check.sh OUT_DIR [bench.gpu.check options]
#
# Runs with the machine's python3 (or $PYTHON) on this checkout's code, installing the wheels
# in .whl/ offline first when that folder exists (bench/gpu/wheels.txt lists them).
# OUT_DIR receives report.json, report.txt, parts.log, gpu_check.log and, when the 7B step
# is slower than its anchor, trace_step_b8.json.gz. The exit status is 0 when every part
# passed its run (not its goals: report.txt says which goals were met).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: bench/gpu/check.sh OUT_DIR [bench.gpu.check options]}
shift
mkdir -p "$out"
wheels=()
if compgen -G "$root/.whl/*.whl" >/dev/null; then
    wheels=(--wheels "$root/.whl")
fi
cd "$root" || exit 1
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
    "${PYTHON:-python3}" -m bench.gpu.check --out "$out" "${wheels[@]}" "$@" 2>&1 \
    | tee "$out/gpu_check.log"
