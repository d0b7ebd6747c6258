#!/usr/bin/env bash
# Runs on a lent NVIDIA machine, from the repository root, with .device carried
# (built by tools/device/build.sh): the CUDA kernels against the CPU kernels,
# training on the card against the CPU, the GPU benches, and MSN training
# throughput beside PyTorch eager on the same card. Each part writes one log
# under $OUT, which the device tool brings back.
#
#     bash tools/device/run.sh tests         # every op's kernel + the training tests (~3 min)
#     bash tools/device/run.sh bench         # matmul TFLOP/s, fused attention, bias+GELU
#     bash tools/device/run.sh throughput    # msn bench vs tools/reference/msn_throughput.py
#     bash tools/device/run.sh cpu           # the CPU test suite on the host processor
#     bash tools/device/run.sh nccl          # pretraining through NCCL, a world of one card
#     bash tools/device/run.sh cpuscale      # the CPU step on 1, 2, 4, 8 and all host cores, PyTorch beside
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp/msn-device}"
mkdir -p "$out"
bin=/tmp/msn-device-bin/bin
if [ ! -x "$bin/msn" ]; then
    mkdir -p "$(dirname "$bin")" && python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
        .device/programs.tar.xz "$(dirname "$bin")" || exit 1
fi
export MSN_FASHION_MNIST="$PWD/data/fashion-mnist" MSN_TEST_DEVICE=cuda MSN_BENCH_DEVICE=cuda
export PYTHONUNBUFFERED=1
# cudarc loads the driver and NVRTC by name at run time: make sure the folders
# holding them (the toolkit's, or the NVIDIA wheels beside PyTorch) are searched.
for lib in libcuda.so.1 libnvrtc.so libnccl.so; do
    if ! ldconfig -p | grep -q "$lib"; then
        site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null)
        dir=$(find /usr/local/cuda*/ /usr/local/nvidia/ "${site:-/nonexistent}/nvidia" -name "$lib*" \
            -printf '%h\n' 2>/dev/null | head -1)
        if [ -n "$dir" ]; then export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
    fi
done
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"

# Runs a command, its output to the terminal and to $OUT/PART.log.
logged() { # logged PART COMMAND...
    local part=$1
    shift
    echo "== $*" | tee -a "$out/$part.log"
    "$@" 2>&1 | tee -a "$out/$part.log"
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt"
for part in "${@:-tests}"; do
    case "$part" in
    tests)
        logged tests "$bin/gpu_vs_cpu" --test-threads 1
        logged tests "$bin/device" --test-threads 1
        # The preset's own width too, which lavapipe is too slow for.
        MSN_DEVICE_TEST_FULL=1 logged tests "$bin/device" --test-threads 1
        ;;
    bench)
        logged bench "$bin/gpu_bench" --bench --warm-up-time 1 --measurement-time 3
        # bf16 products on FMAs too, to see what the tensor cores bring.
        MSN_GPU_TENSOR_CORES=0 logged bench "$bin/gpu_bench" --bench --warm-up-time 1 \
            --measurement-time 3 "matmul.*bf16"
        ;;
    throughput)
        for precision in f32 bf16; do
            logged throughput "$bin/msn" bench --preset msn-vit-small-16 --batch-size 64 \
                --device cuda --precision "$precision" --steps 10 --warmup 3
            if [ "$precision" = bf16 ]; then
                MSN_GPU_TENSOR_CORES=0 logged throughput "$bin/msn" bench --preset msn-vit-small-16 \
                    --batch-size 64 --device cuda --precision bf16 --steps 10 --warmup 3
            fi
            flag=""
            if [ "$precision" = bf16 ]; then flag=--bf16; fi
            (cd tools/reference && logged throughput python3 msn_throughput.py \
                --preset msn-vit-small-16 --batch 64 --device cuda --steps 10 --warmup 3 $flag)
        done
        ;;
    nccl)
        # --collectives nccl on one card: the handshake makes every kind of
        # NCCL call and checks the results, then a few steps train (every
        # exchange of a world of one is skipped, so the handshake is the proof).
        cat > /tmp/msn-nccl.toml <<'TOML'
preset = "fmnist-tiny"
data = "fashion-mnist:test"
batch_size = 64
steps = 5
TOML
        logged nccl "$bin/msn" pretrain --config /tmp/msn-nccl.toml --device cuda \
            --collectives nccl --out /tmp/msn-nccl-run --checkpoint-every 5
        ;;
    cpu)
        # The CPU suite on this machine's host processor, each test binary in
        # its package folder as cargo runs it, under the repository path it
        # was built at (a link to this checkout).
        root=$(cat "$bin/cpu/root")
        if [ ! -e "$root" ]; then mkdir -p "$(dirname "$root")" && ln -s "$PWD" "$root"; fi
        mkdir -p "$root/target/release" && cp "$bin/cpu/msn" "$root/target/release/msn"
        grep -m1 "model name" /proc/cpuinfo | tee -a "$out/cpu.log"
        grep -o "avx512[a-z]*" /proc/cpuinfo | sort -u | tr "\n" " " | tee -a "$out/cpu.log"
        echo | tee -a "$out/cpu.log"
        while read -r package name; do
            (cd "$package" && unset MSN_TEST_DEVICE MSN_BENCH_DEVICE && logged cpu "$bin/cpu/$name")
        done <"$bin/cpu/list"
        grep -E "^test result|FAILED|panicked" "$out/cpu.log" | sort | uniq -c
        ;;
    cpuscale)
        # The CPU step (the first fmnist-tiny, batch 128) on the host's
        # cores, each thread count pinned to that many cores, and PyTorch
        # eager beside it on 2 and on all of them.
        cores=$(nproc)
        for threads in $(printf '%s\n' 1 2 4 8 16 32 64 "$cores" | awk -v c="$cores" '$1 <= c' | sort -nu); do
            RAYON_NUM_THREADS=$threads logged cpuscale taskset -c "0-$((threads - 1))" "$bin/cpu/msn" bench \
                --config tests/fixtures/fmnist-tiny-v1.toml --batch-size 128 --steps 6
            if [ "$threads" = 2 ] || [ "$threads" = "$cores" ]; then
                (cd tools/reference && logged cpuscale taskset -c "0-$((threads - 1))" python3 msn_throughput.py \
                    --preset fmnist-tiny-v1 --batch 128 --steps 6 --threads "$threads")
            fi
        done
        ;;
    *)
        echo "unknown part $part: expected tests, bench, throughput, cpu, nccl or cpuscale" >&2
        exit 2
        ;;
    esac
done
