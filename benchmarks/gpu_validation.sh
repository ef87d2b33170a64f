#!/usr/bin/env bash
# The GPU validation behind docs/validation/: `planner validate` on a 1B llama-style model at
# several sequence lengths (eager and torch.compile), a few other shapes, a kernel-time
# breakdown, and `planner measure` around a real training run. Needs an NVIDIA GPU, torch and
# planner's dependencies importable. Writes JSON lines and logs to $OUT (default ./gpu_out).
#
#   bash benchmarks/gpu_validation.sh [core] [extra] [memory]   (all by default)
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
if [ -d .whl ]; then  # wheels carried to a machine without planner's dependencies
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export PLANNER_LEDGER="$OUT/ledger.sqlite" PLANNER_CALIBRATION="$OUT/calibration.json"
P="python3 -m planner"
LOG="$OUT/log.txt"

{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm \
    --format=csv; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"

validate() {  # validate ARGS...: one JSON line per run in validate.jsonl
    echo "== validate $*" | tee -a "$LOG"
    $P validate --steps 20 --warmup 3 --format json "$@" 2>>"$LOG" \
        | python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin)))" \
        >> "$OUT/validate.jsonl" || echo "FAILED: validate $*" | tee -a "$LOG"
}

core() {
    # The 1B llama-style model, bf16, the same 8K tokens per step at four sequence lengths.
    for cfg in "8 1024" "4 2048" "2 4096" "1 8192"; do
        set -- $cfg
        validate -m llama3.2-1b --micro-batch "$1" --seq-len "$2"
    done
    # A metered training run: 200 steps of 8,192 tokens, extrapolated to 1T tokens.
    echo "== measure" | tee -a "$LOG"
    HW=$(python3 -c "import torch; from planner.profiling.validate import profile_for_gpu as p; print(p(torch.cuda.get_device_name()))")
    $P measure --label gpu-validate-1b --region US --hardware "$HW" -m llama3.2-1b \
        --tokens 1638400 --extrapolate-to 1T --format json -o "$OUT/measure.json" -- \
        $P validate -m llama3.2-1b --micro-batch 4 --seq-len 2048 --steps 200 --warmup 3 \
        --no-energy --format json >> "$LOG" 2>&1 || echo "FAILED: measure" | tee -a "$LOG"
    # Fused kernels through torch.compile.
    validate -m llama3.2-1b --micro-batch 4 --seq-len 2048 --compile
    validate -m llama3.2-1b --micro-batch 2 --seq-len 4096 --compile
}

extra() {
    # Other shapes: a wider GQA model, a small launch-bound one, an MoE.
    validate -m smollm3-3b --micro-batch 1 --seq-len 4096
    validate -m gpt2 --micro-batch 8 --seq-len 1024
    validate -m mixtral-8x7b --scale-to 1B --micro-batch 4 --seq-len 2048
    echo "== breakdown" | tee -a "$LOG"
    python3 benchmarks/gpu_breakdown.py llama3.2-1b:4:2048 llama3.2-1b:1:8192 gpt2:8:1024 \
        >> "$OUT/breakdown.jsonl" 2>>"$LOG" || echo "FAILED: breakdown" | tee -a "$LOG"
    python3 benchmarks/gpu_breakdown.py llama3.2-1b:4:2048 --compile \
        >> "$OUT/breakdown.jsonl" 2>>"$LOG" || echo "FAILED: breakdown --compile" | tee -a "$LOG"
}

memory() {
    # What is alive at the peak of a step, by allocation site.
    echo "== memory" | tee -a "$LOG"
    python3 benchmarks/gpu_memory_peak.py llama3.2-1b:4:2048 gpt2:8:1024 \
        >> "$OUT/memory_peak.jsonl" 2>>"$LOG" || echo "FAILED: memory" | tee -a "$LOG"
}

for part in "${@:-core extra memory}"; do
    for p in $part; do "$p"; done
done

python3 - "$OUT" <<'EOF'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
for line in (out / "validate.jsonl").read_text().splitlines():
    r = json.loads(line)
    errs = " ".join(f"{q['name']}={q['error_pct']:+.1f}%" for q in r["quantities"]
                    if q["error_pct"] is not None)
    print(r["model"]["name"], r["micro_batch_size"], r["seq_len"],
          "compiled" if r.get("compiled") else "eager", errs, "|", "; ".join(r["flags"]))
EOF
