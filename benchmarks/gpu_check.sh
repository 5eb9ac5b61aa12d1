#!/usr/bin/env bash
# The GPU check (docs/gpu-check.md): on one CUDA GPU, build the synthetic full-width FLUX.1-dev,
# make its Q8_0 and Q4_K files with the harness's quantizer, sweep configs/gpu-check.yaml
# (bf16 and Q8_0 under none/model/group/sequential, Q4_K under none/model, 1024x1024, few steps),
# then `bench score`, `bench report` and `bench size --check` on the run. Every phase is timed
# into <results>/phases.tsv. Running it again resumes the same run (`bench run --resume`). It
# starts with the fork check (gpu_check_steps.py fork-check, about ten seconds): the warm cell
# server's imports leave CUDA uninitialised and a forked child can use the GPU.
#
#   benchmarks/gpu_check.sh [--smoke] [--deadline SECONDS] [--pack DIR] [--keep-cache]
#
#   --smoke         configs/gpu-check-smoke.yaml (tiny pipeline) with the project's .venv python,
#                   on whatever device there is: every step in a minute or two on a CPU
#   --deadline S    stop the sweep so that the whole script ends about S seconds after it
#                   started (GPU_CHECK_RESERVE_S, default 60, are kept for score/report/size);
#                   the run is then incomplete and the next invocation resumes it (exit 3)
#   --pack DIR      copy the run and its report, without images, into DIR/gpu-check-run.tgz,
#                   and the reference cell's images into DIR/gpu-check-reference-images.tgz
#   --keep-cache    keep the built pipeline and GGUF files after a complete GPU run
#                   (by default they are deleted then: about 53 GB)
#
# GPU mode uses the machine's own python3 (GPU_CHECK_PYTHON) with the wheels of .whl/ (made by
# benchmarks/gpu_wheels.sh) installed into GPU_CHECK_SITE (default /tmp/site) and the checkout
# itself on PYTHONPATH: the project's pins do not apply, and the manifest records what ran.
# GPU_CHECK_ROOT (default: the checkout) receives results/<name>/ and reports/<name>/;
# BENCH_CACHE_DIR (default ~/.cache/bench-harness) the pipeline and GGUF files.
# Exit status: 0 done, 1 a stage failed, 2 bad input or environment, 3 incomplete (run again).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=gpu
DEADLINE=
PACK=
KEEP_CACHE=0
while (($#)); do
    case $1 in
        --smoke) MODE=smoke ;;
        --deadline)
            DEADLINE=${2:-}
            [[ $DEADLINE =~ ^[0-9]+$ ]] || { echo "error: --deadline expects whole seconds, got '${2:-}'" >&2; exit 2; }
            shift ;;
        --pack)
            PACK=${2:-}
            [[ -n $PACK ]] || { echo "error: --pack expects a folder" >&2; exit 2; }
            shift ;;
        --keep-cache) KEEP_CACHE=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [[ $MODE == smoke ]]; then
    NAME=gpu-check-smoke
    PY=${GPU_CHECK_PYTHON:-$REPO/.venv/bin/python}
    [[ -x $PY ]] || { echo "error: $PY not found: run 'make install-dev' first" >&2; exit 2; }
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
else
    NAME=gpu-check
    PY=${GPU_CHECK_PYTHON:-python3}
    SITE=${GPU_CHECK_SITE:-/tmp/site}
    export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
fi
CONFIG=$REPO/configs/$NAME.yaml
STEPS=$REPO/benchmarks/gpu_check_steps.py
ROOT=${GPU_CHECK_ROOT:-$REPO}
RESULTS=$ROOT/results/$NAME
REPORTS=$ROOT/reports/$NAME
PHASES=$RESULTS/phases.tsv
RESERVE=${GPU_CHECK_RESERVE_S:-60}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
mkdir -p "$RESULTS" "$REPORTS"
cd "$REPO"

# One check at a time per results folder. The lock is inherited by the sweep and its cell
# processes, so a sweep left running by a killed script still holds it.
if command -v flock >/dev/null; then
    exec 9>"$RESULTS/.lock"
    flock -n 9 || { echo "error: another gpu_check.sh is running on $RESULTS" >&2; exit 2; }
fi

INVOCATION=$(date -u +%Y%m%dT%H%M%SZ)
[[ -s $PHASES ]] || printf 'invocation\tmode\tphase\tseconds\texit\tload_1m_5m_15m\tended_utc\n' >"$PHASES"

# phase NAME COMMAND...: run one phase, time it, log it; returns the command's exit status.
phase() {
    local name=$1 t0 t1 secs load rc=0
    shift
    echo "== $name: $*"
    t0=$(date +%s.%N)
    "$@" || rc=$?
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '- - -')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$INVOCATION" "$MODE" "$name" "$secs" "$rc" "$load" \
        "$(date -u +%FT%TZ)" >>"$PHASES"
    echo "== $name: $secs s, exit $rc, load average $load"
    return "$rc"
}

# GPU mode: the missing packages travel as wheels; installed once per machine and wheel set.
install_wheels() {
    local stamp
    stamp=$(cd "$REPO/.whl" && ls -- *.whl | sha256sum | cut -c1-16)
    if [[ -f $SITE/.gpu-check-wheels && $(cat "$SITE/.gpu-check-wheels") == "$stamp" ]]; then
        echo "wheels already installed in $SITE"
        return 0
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$REPO"/.whl/*.whl
    echo "$stamp" >"$SITE/.gpu-check-wheels"
}

if [[ $MODE == gpu ]] && compgen -G "$REPO/.whl/*.whl" >/dev/null; then
    phase install install_wheels
fi
FAILED=()
# The first check, in about ten seconds: the warm cell server's imports leave CUDA untouched and
# a child forked after them can use the GPU (skipped, saying so, without one). A failure does
# not stop the script: the sweep then starts its cells spawned and says so; it is reported at
# the end (exit 1).
phase fork-check "$PY" "$STEPS" fork-check || FAILED+=(fork-check)
phase preflight "$PY" "$STEPS" preflight "$CONFIG" --mode "$MODE"

RUN_DIR=$("$PY" "$STEPS" find-run "$CONFIG" "$RESULTS")
SKIPPED=0
if [[ -n $RUN_DIR ]] && (($("$PY" "$STEPS" missing "$RUN_DIR") == 0)); then
    # Nothing left to run: no build, no sweep (whose preparation would rebuild a deleted cache);
    # score, report and size run again on the finished run.
    echo "$RUN_DIR is complete: scoring, reporting and size-checking it again"
    SKIPPED=1
else
    phase build "$PY" "$STEPS" build "$CONFIG"
    phase quantize "$PY" "$STEPS" quantize "$CONFIG"
fi
if [[ -n $RUN_DIR ]]; then
    ((SKIPPED)) || echo "resuming $RUN_DIR"
    SWEEP=(-m bench run --resume "$RUN_DIR" --no-score)
else
    SWEEP=(-m bench run "$CONFIG" --out "$RESULTS" --no-score)
fi
LIMIT=()
if ((!SKIPPED)) && [[ -n $DEADLINE ]]; then
    LEFT=$((DEADLINE - SECONDS - RESERVE))
    if ((LEFT < 20)); then
        echo "deadline: ${LEFT} s left for the sweep; not starting it"
        SKIPPED=1
        [[ -n $RUN_DIR ]] || { echo "incomplete: no time left to start the run" >&2; exit 3; }
    else
        # --foreground: the sweep stays in this process group (a kill of the group reaches it);
        # its cell processes end on their own when the sweep's process is gone.
        LIMIT=(timeout --foreground --kill-after=15 "$LEFT")
    fi
fi
SWEEP_RC=0
if ((!SKIPPED)); then
    phase run "${LIMIT[@]}" "$PY" "${SWEEP[@]}" || SWEEP_RC=$?
fi
RUN_DIR=$("$PY" "$STEPS" find-run "$CONFIG" "$RESULTS")
if [[ -z $RUN_DIR ]]; then
    echo "error: the sweep wrote no run folder under $RESULTS (exit $SWEEP_RC)" >&2
    exit 1
fi
if ((SWEEP_RC == 124 || SWEEP_RC == 137)); then
    echo "deadline reached: the sweep was stopped; running the script again resumes $RUN_DIR"
elif ((SWEEP_RC != 0)); then
    echo "error: the sweep ended with exit status $SWEEP_RC" >&2
fi

REPORT_DIR=$REPORTS/$(basename "$RUN_DIR")
phase score "$PY" -m bench score "$RUN_DIR" || FAILED+=(score)
phase report "$PY" -m bench report "$RUN_DIR" --out "$REPORT_DIR" || FAILED+=(report)
phase size "$PY" -m bench size --check "$RUN_DIR" --json "$REPORT_DIR/size-check.json" ||
    FAILED+=(size)
MISSING=$("$PY" "$STEPS" missing "$RUN_DIR")

if [[ -n $PACK ]]; then
    mkdir -p "$PACK"
    REFERENCE=$(ls -d "$RUN_DIR"/images/full-*__none__* 2>/dev/null | head -n1 || true)
    pack() {
        tar -czf "$PACK/gpu-check-run.tgz" -C "$ROOT" --exclude=images --exclude='*.png' \
            --exclude=report.html --exclude=.lock \
            "results/$NAME" "reports/$NAME/$(basename "$RUN_DIR")"
        if [[ -n $REFERENCE ]]; then
            tar -czf "$PACK/gpu-check-reference-images.tgz" -C "$ROOT" \
                "${REFERENCE#"$ROOT"/}"
        fi
        ls -l "$PACK"
    }
    phase pack pack || FAILED+=(pack)
fi

if ((MISSING == 0)) && ((${#FAILED[@]} == 0)) && [[ $MODE == gpu ]] && ((!KEEP_CACHE)); then
    phase cleanup "$PY" "$STEPS" cleanup "$CONFIG" || FAILED+=(cleanup)
fi

echo "== phases of this invocation ($PHASES):"
awk -F'\t' -v id="$INVOCATION" '$1 == id { printf "  %-10s %8s s  exit %s  load %s\n", $3, $4, $5, $6 }' "$PHASES"
echo "run folder: $RUN_DIR"
echo "report: $REPORT_DIR"
if ((${#FAILED[@]})); then
    echo "error: failed stage(s): ${FAILED[*]}" >&2
    exit 1
fi
if ((SWEEP_RC != 0 && SWEEP_RC != 124 && SWEEP_RC != 137)); then
    exit 1
fi
if ((MISSING > 0)); then
    echo "incomplete: $MISSING cell(s) still to run; run the same command again to resume"
    exit 3
fi
echo "complete"
