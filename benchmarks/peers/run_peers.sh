#!/usr/bin/env bash
# Train the peers (JoeyNMT 2.3.0, OpenNMT-py 3.5.1) on our data with our architecture and batch,
# one after the other, and write their target tokens/s and dev perplexity to OUT_DIR/peers.json.
#
#   bash benchmarks/peers/run_peers.sh DATA_DIR OUT_DIR STEPS
#
# DATA_DIR: an `nmt preprocess` folder (has manifest.json; e.g. runs/prepared/tatoeba-en-fr) or a
#           folder of train.src train.tgt valid.src valid.tgt (space-separated pieces) with
#           optional vocab.src vocab.tgt. See prepare_data.py.
# OUT_DIR:  gets one log per run and peers.json, nothing else (it may be the device's $OUT).
# STEPS:    measured updates; every run trains WARMUP + STEPS updates and validates once, at the end.
#
# Environment (defaults = the GPU benchmark; README.md explains each):
#   LAYERS=4 HIDDEN=1000 EMB=1000 BATCH=128 DEVICE=cuda AMP=1 LR=0.7 CLIP=5 INIT=0.08 SEED=1
#   WARMUP=50 LOG_EVERY=50 REVERSE_SRC=1 BUCKET=(100*BATCH) NUM_WORKERS=2 (OpenNMT-py loader)
#   RUNS="joeynmt onmt-attn onmt-noattn"  RUN_TIMEOUT=0 (seconds per run, 0 = none)
#   WORK_DIR=/tmp/nmt-peers-work (data copy, configs, checkpoints)  PYTHON=python3
# The peers must be importable (on the GPU machine: pip install the carried .whl/ into /tmp/site
# and export PYTHONPATH=/tmp/site first; README.md has the one-line command).
set -uo pipefail

if [ $# -ne 3 ]; then
    echo "usage: bash benchmarks/peers/run_peers.sh DATA_DIR OUT_DIR STEPS" >&2
    exit 2
fi
DATA_DIR=$1
OUT_DIR=$2
STEPS=$3
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

LAYERS=${LAYERS:-4}
HIDDEN=${HIDDEN:-1000}
EMB=${EMB:-1000}
BATCH=${BATCH:-128}
DEVICE=${DEVICE:-cuda}
AMP=${AMP:-1}
LR=${LR:-0.7}
CLIP=${CLIP:-5.0}
INIT=${INIT:-0.08}
SEED=${SEED:-1}
WARMUP=${WARMUP:-50}
LOG_EVERY=${LOG_EVERY:-50}
REVERSE_SRC=${REVERSE_SRC:-1}
BUCKET=${BUCKET:-$((100 * BATCH))}
NUM_WORKERS=${NUM_WORKERS:-2}
RUNS=${RUNS:-"joeynmt onmt-attn onmt-noattn"}
RUN_TIMEOUT=${RUN_TIMEOUT:-0}
WORK_DIR=${WORK_DIR:-/tmp/nmt-peers-work}
PYTHON=${PYTHON:-python3}
TOTAL=$((WARMUP + STEPS))

die() { echo "run_peers: $*" >&2; exit 2; }
[ -d "$DATA_DIR" ] || die "no data folder $DATA_DIR"
[ "$STEPS" -gt 0 ] 2>/dev/null || die "STEPS must be a positive integer"
[ $((WARMUP % LOG_EVERY)) -eq 0 ] && [ $((STEPS % LOG_EVERY)) -eq 0 ] \
    || die "WARMUP ($WARMUP) and STEPS ($STEPS) must be multiples of LOG_EVERY ($LOG_EVERY)"
case "$DEVICE" in cuda|cpu) ;; *) die "DEVICE must be cuda or cpu" ;; esac
case "$AMP" in 0|1) ;; *) die "AMP must be 0 or 1" ;; esac
if [ "$DEVICE" = cpu ] && [ "$AMP" = 1 ]; then
    echo "run_peers: DEVICE=cpu: AMP forced to 0 (both peers autocast to float16 on CUDA only)"
    AMP=0
fi

mkdir -p "$OUT_DIR" "$WORK_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
[ "${KEEP_RESULTS:-0}" = 1 ] || rm -f "$OUT_DIR/peers.json"  # KEEP_RESULTS=1 adds to an earlier peers.json
WORK_DIR=$(cd "$WORK_DIR" && pwd)
DATA=$WORK_DIR/data
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1 PYTHONWARNINGS=${PYTHONWARNINGS:-ignore::FutureWarning}

echo "run_peers: data $DATA_DIR -> $DATA (reverse source: $REVERSE_SRC)"
rm -rf "$DATA"
REV=(); [ "$REVERSE_SRC" = 1 ] && REV=(--reverse-src)
"$PYTHON" "$HERE/prepare_data.py" "$DATA_DIR" "$DATA" "${REV[@]}" || die "prepare_data.py failed"

if [ "$AMP" = 1 ]; then PRECISION="fp16-amp"; JOEY_AMP=True; ONMT_DTYPE=fp16; else PRECISION="fp32"; JOEY_AMP=False; ONMT_DTYPE=fp32; fi
if [ "$DEVICE" = cuda ]; then USE_CUDA=True; GPU_LINES=$'world_size: 1\ngpu_ranks: [0]'; else USE_CUDA=False; GPU_LINES="world_size: 1"; fi
COMMON=(DATA="$DATA" LAYERS="$LAYERS" HIDDEN="$HIDDEN" EMB="$EMB" BATCH="$BATCH" LR="$LR" CLIP="$CLIP"
        INIT="$INIT" SEED="$SEED" TOTAL_STEPS="$TOTAL" LOG_EVERY="$LOG_EVERY")
STATUS=0

# run NAME PEER CONFIG ARCH_JSON VALIDATIONS -- launcher args...
run() {
    local name=$1 peer=$2 config=$3 arch=$4 validations=$5; shift 6
    local log="$OUT_DIR/$name.log" cmd rc start end
    cmd="$PYTHON benchmarks/peers/peer_launch.py $*"
    echo "run_peers: === $name: $cmd (log $log)"
    start=$(date +%s.%N)
    timeout "$RUN_TIMEOUT" "$PYTHON" "$HERE/peer_launch.py" "$@" >"$log" 2>&1
    rc=$?
    end=$(date +%s.%N)
    [ $rc -ne 0 ] && { echo "run_peers: $name exited with $rc; the last lines of its log:"; tail -n 25 "$log"; STATUS=1; }
    "$PYTHON" "$HERE/parse_logs.py" record --out "$OUT_DIR/peers.json" --peer "$peer" --name "$name" \
        --log "$log" --config "$config" --validations "$validations" --data-stats "$DATA/stats.json" \
        --warmup "$WARMUP" --steps "$STEPS" --log-every "$LOG_EVERY" --batch "$BATCH" --precision "$PRECISION" \
        --architecture "$arch" --command "$cmd" --rc "$rc" \
        --wall-seconds "$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}')" || STATUS=1
}

arch() {  # attention input_feeding decoder_init
    printf '{"cell": "lstm", "layers": %s, "hidden": %s, "embed": %s, "bidirectional": false, "attention": "%s", "input_feeding": %s, "decoder_init": "%s", "reverse_source": %s, "dropout": 0.0, "tied_embeddings": false}' \
        "$LAYERS" "$HIDDEN" "$EMB" "$1" "$2" "$3" "$([ "$REVERSE_SRC" = 1 ] && echo true || echo false)"
}

for r in $RUNS; do
    case "$r" in
    joeynmt)
        dir=$WORK_DIR/joeynmt; rm -rf "$dir"; mkdir -p "$dir"
        cfg=$dir/config.yaml
        "$PYTHON" "$HERE/render_config.py" "$HERE/joeynmt_rnn.yaml.in" "$cfg" "${COMMON[@]}" \
            MODEL_DIR="$dir/model" USE_CUDA="$USE_CUDA" AMP="$JOEY_AMP" || die "render joeynmt config"
        run joeynmt joeynmt "$cfg" "$(arch general true "encoder last layer's final h, copied to every layer (h and c)")" \
            "$dir/model/validations.txt" -- joeynmt train "$cfg" --skip-test
        ;;
    onmt-attn|onmt-noattn)
        if [ "$r" = onmt-attn ]; then att=general; feed=1; else att=none; feed=0; fi
        dir=$WORK_DIR/$r; rm -rf "$dir"; mkdir -p "$dir"
        cfg=$dir/config.yaml
        "$PYTHON" "$HERE/render_config.py" "$HERE/onmt_rnn.yaml.in" "$cfg" "${COMMON[@]}" \
            MODEL_DIR="$dir" ATTENTION="$att" INPUT_FEED="$feed" MODEL_DTYPE="$ONMT_DTYPE" \
            GPU_LINES="$GPU_LINES" BUCKET="$BUCKET" NUM_WORKERS="$NUM_WORKERS" || die "render $r config"
        run "$r" onmt "$cfg" "$(arch "$att" "$([ $feed = 1 ] && echo true || echo false)" "each encoder layer's final (h, c)")" \
            "" -- onmt -config "$cfg"
        ;;
    *) die "unknown run '$r' (choose from: joeynmt onmt-attn onmt-noattn)" ;;
    esac
done

echo "run_peers: results in $OUT_DIR/peers.json"
"$PYTHON" "$HERE/parse_logs.py" show "$OUT_DIR"
exit $STATUS
