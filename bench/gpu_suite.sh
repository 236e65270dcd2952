#!/usr/bin/env bash
# One-command GPU benchmark suite (random weights at ZeroScope's full size, 24 frames 576x320).
#
#   bash bench/gpu_suite.sh [quick|full|wan] [OUT_DIR]   (default: quick bench/results; OUT_DIR
#                                                        relative to the repository root)
#
# quick: the 4 runs that answer the targets: peak memory (≤ 12 GB default, ≤ 8 GB low-memory),
#        overhead over the UNet-work floor, the whole authors' edit incl. its real 999-step
#        inversion, the fast preset, bf16 vs fp16. Estimated (not measured) 8-12 min on an H100,
#        about 1 min of it building the random model per run.
# full:  adds channels_last, the SDPA backends, torch.compile, CUDA graphs (reduce-overhead), the
#        classic attention processor, a separate 999-step inversion and an fp32 authors' edit
#        (compile times are unknown: each run has its own timeout).
# wan:   issue 20's GPU figures instead: one AMF transfer on a random-weight Wan2.1-T2V-1.3B
#        (bf16, 480x832) at 33 and 81 frames, default and low-memory (time, peak memory), then the
#        toy Wan on 33-frame clips (`toyworld train --kind wan --frames 33 --device cuda`, resumed
#        from OUT_DIR/toy-wan-33 when a limit cut it off: run the mode again to go on) and, once
#        trained, its gates (`toyworld eval`, on the CPU; about an hour). TRAIN_TIMEOUT (default 1200)
#        caps the training.
# Every run writes OUT_DIR/gpu-<name>-<date>.json and .txt; a failed or timed-out run is logged
# and the suite goes on. Sized for an H100/H200; not yet run on one (no GPU so far). Per-run
# limit: RUN_TIMEOUT seconds (default 420).
set -uo pipefail
MODE=${1:-quick}
OUT=${2:-bench/results}
STAMP=$(date -u +%Y-%m-%d)
LIMIT=${RUN_TIMEOUT:-420}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
COMMON=(--device cuda --size full --frames 24 --width 576 --height 320 --quiet)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu-device-$STAMP.txt"
python -c "import torch, diffusers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__)" \
  | tee -a "$OUT/gpu-device-$STAMP.txt"

run() {
  local name=$1; shift
  local t0=$SECONDS
  echo "=== $name: python bench/bench_dmt.py ${COMMON[*]} $* (limit ${LIMIT}s)"
  if timeout "$LIMIT" python bench/bench_dmt.py "${COMMON[@]}" "$@" --json "$OUT/gpu-$name-$STAMP.json" \
      > "$OUT/gpu-$name-$STAMP.txt" 2>&1; then
    tail -n 30 "$OUT/gpu-$name-$STAMP.txt"
  else
    echo "FAILED or timed out ($?): $name"; tail -n 5 "$OUT/gpu-$name-$STAMP.txt"
  fi
  echo "=== $name took $((SECONDS - t0)) s"
}

# 1. Default (fp16): every per-op time and peak, the whole authors' edit (999-step inversion) with
#    its peak GPU memory and overhead over the UNet-work floor.
run fp16-authors --dtype float16 --repeats 2 --preset authors
# 2. The fast preset's whole edit (100 inversion steps, no restart).
run fp16-fast --dtype float16 --repeats 2 --preset fast
# 3. Low-memory mode (checkpointed guided step, text encoder and VAE off the GPU while idle).
run fp16-lowmem-fast --dtype float16 --repeats 2 --preset fast --low-memory
# 4. bf16 vs fp16 (per-op times and peaks, no whole edit).
run bf16 --dtype bfloat16 --repeats 2 --no-edit

if [ "$MODE" = wan ]; then
  for lm in 0 1; do
    t0=$SECONDS
    echo "=== wan-lowmem$lm: bench/bench_wan.py --size full bf16 480x832 --frames 33 81 (limit ${LIMIT}s)"
    timeout "$LIMIT" python bench/bench_wan.py --size full --device cuda --dtype bfloat16 --width 832 --height 480 \
      --frames 33 81 --steps 50 --low-memory $lm --json "$OUT/gpu-wan-lowmem$lm-$STAMP.json" \
      > "$OUT/gpu-wan-lowmem$lm-$STAMP.txt" 2>&1 || echo "FAILED or timed out ($?): wan-lowmem$lm"
    tail -n 20 "$OUT/gpu-wan-lowmem$lm-$STAMP.txt"; echo "=== wan-lowmem$lm took $((SECONDS - t0)) s"
  done
  TOY="$OUT/toy-wan-33"
  echo "=== toy Wan on 33-frame clips into $TOY (limit ${TRAIN_TIMEOUT:-1200}s; resumable)"
  if timeout "${TRAIN_TIMEOUT:-1200}" python -m dmt toyworld train --kind wan --frames 33 --device cuda --resume \
      --out "$TOY" > "$OUT/gpu-toy-wan-33-train-$STAMP.txt" 2>&1 && [ -f "$TOY/toyworld.json" ]; then
    python -m dmt toyworld eval --model "$TOY" --threads "$(nproc)" --json "$OUT/gpu-toy-wan-33-eval-$STAMP.json" \
      | tee "$OUT/gpu-toy-wan-33-eval-$STAMP.txt"
  else
    echo "toy Wan training not finished (rc $?): run 'bash bench/gpu_suite.sh wan $OUT' again to resume it"
  fi
  echo "results in $OUT (gpu-*-$STAMP.*)"
  exit 0
fi

if [ "$MODE" = full ]; then
  run fp16-channels-last --dtype float16 --repeats 3 --no-edit --channels-last
  run fp16-sdpa-flash --dtype float16 --repeats 3 --no-edit --sdpa-backend flash
  run fp16-sdpa-efficient --dtype float16 --repeats 3 --no-edit --sdpa-backend efficient
  run fp16-sdpa-cudnn --dtype float16 --repeats 3 --no-edit --sdpa-backend cudnn
  run fp16-compile --dtype float16 --repeats 3 --no-edit --compile
  run fp16-cudagraphs --dtype float16 --repeats 3 --no-edit --compile --compile-mode reduce-overhead
  run fp16-classic-attention --dtype float16 --repeats 3 --no-edit --attention classic
  run fp16-inversion-999 --dtype float16 --repeats 1 --no-edit --measure-999
  run fp32-authors --dtype float32 --repeats 2 --preset authors
fi
echo "results in $OUT (gpu-*-$STAMP.json)"
