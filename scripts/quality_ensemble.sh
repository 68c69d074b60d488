#!/usr/bin/env bash
# Train the members of an ensemble side by side on one GPU, average each member's 5 best
# checkpoints, then score the ensemble of the averaged members (and of their best checkpoints).
# Usage:
#   bash scripts/quality_ensemble.sh NAME CONFIG "MEMBER" ["MEMBER" ...]
# A MEMBER is its config overrides, space-separated key=value; each needs its own train.run_dir
# and should bound its training (train.max_steps, or train.max_minutes). QUALITY_ARGS (optional)
# go to every quality_run.py call (each record reads its commit from git). Records and test outputs
# (relative to the current folder): runs/results/NAME-member-K.json, NAME-averaged.json, NAME-best.json.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: bash scripts/quality_ensemble.sh NAME CONFIG \"MEMBER OVERRIDES\" [\"MEMBER OVERRIDES\" ...]" >&2
  exit 2
fi
name=$1; config=$2; shift 2
read -r -a common <<< "${QUALITY_ARGS:-}"
R=runs/results; mkdir -p "$R"
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
here=$(cd "$(dirname "$0")" && pwd)
q() { python3 "$here/quality_run.py" --config "$config" "${common[@]}" "$@"; }

pids=(); run_dirs=(); k=0
for member in "$@"; do
  k=$((k + 1))
  read -r -a overrides <<< "$member"
  run_dir=$(printf '%s\n' "${overrides[@]}" | sed -n 's/^train\.run_dir=//p')
  if [ -z "$run_dir" ]; then
    echo "member $k ($member) has no train.run_dir=...: give each member its own run folder" >&2
    exit 2
  fi
  run_dirs+=("$run_dir")
  q --name "$name-member-$k" --average 5 "${overrides[@]/#/--set=}" --out "$R/$name-member-$k.json" \
    > "$R/$name-member-$k.log" 2>&1 &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
if [ $failed -ne 0 ]; then
  echo "a member failed: see $R/$name-member-*.log" >&2
  exit 1
fi

averaged=(); best=()
for run_dir in "${run_dirs[@]}"; do
  newest=$(ls -1dt "$run_dir"/average-* | head -n 1)  # what this member's quality_run just wrote
  averaged+=("$newest"); best+=("$run_dir/best")
done
q --name "$name-averaged" --eval-only "${averaged[@]}" --out "$R/$name-averaged.json"
q --name "$name-best" --eval-only "${best[@]}" --out "$R/$name-best.json"
grep -h "BLEU" "$R/$name"-member-*.log
