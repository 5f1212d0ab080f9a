#!/usr/bin/env bash
# The GPU check: one script that, on a fresh machine with one NVIDIA GPU, this checkout and ../shared
# beside it, installs cifar-bench, extracts the offline CIFAR-10 copy and measures, within about 8
# minutes on a recent GPU:
#
#   1. the baseline (the tutorial, batch 4, 2 epochs) on cuda, plain and with --cuda-graph;
#   2. the airbench recipe to 94% test accuracy (--target-acc 0.94 --stop-at-target: time to target);
#   3. a variant matrix on airbench_narrow: fp32/bf16 x contiguous/channels-last x eager/compiled;
#   4. `cifar-bench report` of all of it (markdown), and a summary of the figures the README quotes.
#
# Everything it writes goes under $OUT (records, logs, report); the extracted data and the decoded
# cache go to a scratch folder ($SCRATCH, default a temporary one). A step that fails or runs past its
# time limit is logged and the others still run; the records say why. Exit code: 0 when every step
# ran, 1 when one failed.
#
#   OUT=/tmp/gpu-check benchmarks/gpu_check.sh                 # on a GPU machine
#   OUT=/tmp/cpu-check benchmarks/gpu_check.sh --device cpu    # tiny limits: the test suite's end-to-end check
#
# Options: --device cuda|cpu (cpu implies --tiny), --tiny (a few images, one epoch, two corners of the
# matrix, no compiled variants: seconds on a CPU), --synthetic (synthetic data instead of ../shared, no
# extraction), --python PY (the Python to install into and run with; default python3).
set -uo pipefail

device=cuda tiny=0 synthetic=0 python=${PYTHON:-python3}
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device=$2; shift 2 ;;
        --tiny) tiny=1; shift ;;
        --synthetic) synthetic=1; shift ;;
        --python) python=$2; shift 2 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$device" in cuda|cuda:*) ;; cpu) tiny=1 ;; *) echo "gpu_check.sh: --device is cuda or cpu, not $device" >&2; exit 2 ;; esac

repo=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$repo/gpu-check-out}
mkdir -p "$OUT/results" "$OUT/logs"
SCRATCH=${SCRATCH:-$(mktemp -d)}
failed=0
log() { echo "[gpu_check $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/logs/steps.log"; }

# -- install ----------------------------------------------------------------------------------
# The GPU machine may have no network: torch and the other dependencies already installed are used
# as they are (a venv over the system's packages), and only this checkout is installed, without deps.
if "$python" -c "import cifar_bench" 2>/dev/null; then
    log "cifar-bench already importable by $python: not reinstalling"
else
    log "installing cifar-bench from $repo"
    system_python=$python
    if "$python" -m venv --system-site-packages "$SCRATCH/venv" >"$OUT/logs/install.log" 2>&1; then
        python="$SCRATCH/venv/bin/python"
        if "$python" -c "import torch, torchvision, pluggy, pandas, tabulate, tqdm, scipy, matplotlib" 2>/dev/null; then
            "$python" -m pip install -q --no-deps --no-build-isolation -e "$repo" >>"$OUT/logs/install.log" 2>&1
        else
            "$python" -m pip install -q -e "$repo" >>"$OUT/logs/install.log" 2>&1
        fi
    fi
    if ! "$python" -c "import cifar_bench" 2>/dev/null; then
        # No venv module, no setuptools, no network: run from a copy of the sources instead, as the
        # installed package would lay them out (harness/ as cifar_bench, plugins/ as cifar_bench.plugins).
        log "pip install did not work (see $OUT/logs/install.log): running from a copy of the sources"
        python=$system_python
        mkdir -p "$SCRATCH/src"
        cp -r "$repo/harness" "$SCRATCH/src/cifar_bench" && cp -r "$repo/plugins" "$SCRATCH/src/cifar_bench/plugins"
        export PYTHONPATH="$SCRATCH/src${PYTHONPATH:+:$PYTHONPATH}"
        "$python" -c "import cifar_bench" || { log "cannot import cifar_bench: install its dependencies"; exit 1; }
    fi
    # Energy and utilization come from NVML when nvidia-ml-py is there; without it they are recorded as null.
    "$python" -c "import pynvml" 2>/dev/null || "$python" -m pip install -q nvidia-ml-py >>"$OUT/logs/install.log" 2>&1 ||
        log "nvidia-ml-py not installable here: energy is recorded as null, with the reason"
fi
"$python" - <<'EOF' | tee "$OUT/logs/machine.txt"
import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} device(s)")
else:
    print("no CUDA device")
EOF
[ "$device" = cpu ] || "$python" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" ||
    { log "no CUDA device here: run with --device cpu for the tiny check"; exit 2; }

# -- data -------------------------------------------------------------------------------------
archive="$repo/../shared/datasets/cifar10-jpeg.tar.gz"
if [ "$synthetic" = 1 ]; then
    data=(--dataset synthetic)
elif [ -f "$archive" ]; then
    log "extracting $archive into $SCRATCH"
    tar xzf "$archive" -C "$SCRATCH" || { log "cannot extract $archive"; exit 1; }
    data=(--data-dir "$SCRATCH/cifar10-jpeg")
else
    log "no offline data at $archive: put ../shared beside the checkout, or use --synthetic"; exit 2
fi
common=(--device "$device" "${data[@]}" --cache-dir "$SCRATCH/cache" --quiet)
if [ "$tiny" = 1 ]; then
    # Seconds in all on a CPU: a few images, one thread, no CPU tuning, and a matrix of two corners.
    common+=(--limit-train 64 --limit-test 32 --epochs 1 --threads 1 --no-cpu-tune)
    baseline_limit=(--batch-size 16)
    matrix_epochs=() matrix=(fp32,contiguous,none bf16,channels-last,none)
else
    baseline_limit=()
    matrix_epochs=(--epochs 2) matrix=()
    for precision in fp32 bf16; do
        for layout in contiguous channels-last; do
            for compiled in none compile; do matrix+=("$precision,$layout,$compiled"); done
        done
    done
fi

# step NAME LIMIT_S ARGS...: one `cifar-bench run`, its output in logs/NAME.log, records in results/NAME/.
step() {
    local name=$1 limit=$2; shift 2
    log "$name: cifar-bench run $*"
    local start=$SECONDS
    timeout "$limit" "$python" -m cifar_bench run "$@" "${common[@]}" --results-dir "$OUT/results/$name" \
        >"$OUT/logs/$name.log" 2>&1
    local rc=$?
    log "$name: exit $rc after $((SECONDS - start)) s"
    [ $rc -eq 0 ] || failed=1
}

# The first run decodes the JPEGs into the cache; later runs load it in a second.
step baseline 240 baseline "${baseline_limit[@]}"
step baseline-graphed 120 baseline "${baseline_limit[@]}" --cuda-graph
if [ "$tiny" = 1 ]; then
    step airbench-94 120 airbench --precision bf16 --channels-last --set widths='[8,8,8]'
else
    step airbench-94 180 airbench --precision bf16 --channels-last --target-acc 0.94 --stop-at-target
fi
for corner in "${matrix[@]}"; do
    IFS=, read -r precision layout compiled <<<"$corner"
    flags=(--precision "$precision")
    [ "$layout" = channels-last ] && flags+=(--channels-last)
    [ "$compiled" = compile ] && flags+=(--compile)
    step "narrow-$precision-$layout-$compiled" 150 airbench_narrow "${matrix_epochs[@]}" "${flags[@]}"
done

# -- report -----------------------------------------------------------------------------------
log "report"
"$python" -m cifar_bench report "$OUT/results" --include-failed --format markdown --output "$OUT/report.md" ||
    failed=1
"$python" - "$OUT" <<'EOF' | tee "$OUT/summary.md"
# The figures the README quotes, one line each, from the records.
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
print("| step | status | variant | train s | CUDA-event train s | time to target s | test acc % | energy J | train img/J |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for path in sorted(out.glob("results/*/*.json")):
    r = json.loads(path.read_text())
    variant = " ".join([r["precision"]] + [k for k in ("channels_last", "compile", "cuda_graph") if r.get(k)])
    events = ((r.get("cuda") or {}).get("event_s") or {}).get("train")
    energy = r.get("energy") or {}
    acc = r["metrics"]["test_accuracy"]
    cells = [path.parent.name, r["status"] + (f" ({r['error']})" if r.get("error") else ""), variant,
             f"{r['timings']['train_s']:.2f}", f"{events:.2f}" if events else "-",
             f"{r['metrics']['time_to_target_s']:.2f}" if r["metrics"].get("time_to_target_s") else "-",
             f"{100 * acc:.2f}" if acc is not None else "-",
             f"{energy['run_j']:.0f}" if energy.get("run_j") else "-",
             f"{energy['train_img_per_j']:.0f}" if energy.get("train_img_per_j") else "-"]
    print("| " + " | ".join(cells) + " |")
EOF
log "done: report in $OUT/report.md, summary in $OUT/summary.md, records in $OUT/results, logs in $OUT/logs"
exit $failed
