#!/usr/bin/env bash
# Every quality row of the README at once, on one GPU: the runs are small and the eager loop is
# bound by the CPU, so they train side by side (one CPU thread each). Usage:
#   bash scripts/quality_suite.sh MINUTES [extra --set for every run ...]
# Needs runs/prepared/{multi30k-en-de,multi30k-de-en,multi30k-en-fr,tatoeba-en-fr,tatoeba-en-fa}
# and runs/data/newstest2014. Results: runs/results/*.json and the test outputs beside them.
set -u
minutes=$1; shift
extra=("$@")
R=runs/results; mkdir -p "$R"
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
q() { python3 scripts/quality_run.py --lowercase-too --set "train.max_minutes=$minutes" \
        "${extra[@]/#/--set=}" "$@"; }
A=configs/ablation-multi30k-en-de.yaml
pids=()
run() { local name=$1; shift; q --name "$name" --out "$R/$name.json" "$@" > "$R/$name.log" 2>&1 & pids+=($!); }

run multi30k-en-de --config configs/multi30k-en-de.yaml --beams 1,10
run multi30k-de-en --config configs/multi30k-de-en.yaml --beams 10
run multi30k-en-fr --config configs/multi30k-en-fr.yaml --beams 10
run tatoeba-en-fr-attention --config configs/tatoeba-en-fr-attention.yaml --beams 10 \
    --extra-test newstest2014=runs/data/newstest2014/newstest2014.en-fr
run tatoeba-en-fa --config configs/tatoeba-en-fa.yaml --beams 1,10

run ablation-forward --config $A --set model.reverse_source=false --set train.run_dir=runs/ablation/forward --beams 12
run ablation-reversed --config $A --beams 12
run ablation-dropout --config $A --set model.dropout=0.3 --set train.run_dir=runs/ablation/dropout --beams 12
run ablation-attention --config $A --set model.dropout=0.3 --set model.attention=general \
    --set train.run_dir=runs/ablation/attention --beams 12
feed=(--config $A --set model.dropout=0.3 --set model.attention=general --set model.input_feeding=true)
run ablation-input-feeding "${feed[@]}" --set train.run_dir=runs/ablation/feed-seed1 --beams 1,2,12
for seed in 2 3 4 5; do
  run ablation-input-feeding-seed$seed "${feed[@]}" --set train.seed=$seed --set train.run_dir=runs/ablation/feed-seed$seed --beams 12
done
for pid in "${pids[@]}"; do wait "$pid"; done
q --name ablation-ensemble-5 --out "$R/ablation-ensemble-5.json" "${feed[@]}" --beams 12 \
  --eval-only runs/ablation/feed-seed{1,2,3,4,5}/best > "$R/ablation-ensemble-5.log" 2>&1
grep -h "beam" "$R"/*.log | grep BLEU
