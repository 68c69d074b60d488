#!/usr/bin/env bash
# Which part of configs/wikitext2-awd.yaml crashed a CUDA-graph run on the H200: 20 steps of each
# variant, under faulthandler; rc 139 is a segmentation fault. (Kept as the record of how the
# crash was isolated: benchmarks/results/lm/wikitext2-awd-graphs-crash-h200.txt.)
#   OUT=/tmp/diag bash scripts/diagnose_awd_graphs.sh data/wikitext-2
W=${1:-data/wikitext-2}
OUT=${OUT:-/tmp/diag-awd}
mkdir -p "$OUT"
base="--set data.train=$W/train.txt --set data.valid=$W/valid.txt --set data.test=$W/test.txt --set train.max_steps=20 --set train.log_every=5"
python3 -X faulthandler -m nmt preprocess --config wikitext2-awd $base > "$OUT/diag-prep.txt" 2>&1
run() { name=$1; shift; timeout 90 python3 -X faulthandler -m nmt train --config wikitext2-awd $base --set train.run_dir=runs/diag-$name "$@" > "$OUT/diag-$name.txt" 2>&1; echo "$name rc=$?" >> "$OUT/diag-summary.txt"; }
run full
run eager --set train.cuda_graphs=false
run noweightdrop --set model.weight_drop=0
run fixedbptt --set train.bptt_variable=false
run noavg --set train.averaging=none
run novar --set model.variational_dropout=false
run eager-static-off --set train.cuda_graphs=false --set train.static_shapes=false
cat "$OUT/diag-summary.txt"
