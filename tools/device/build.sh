#!/usr/bin/env bash
# Builds here (x86-64) what a lent NVIDIA machine runs for the GPU figures, with
# the CUDA runtime compiled in, and packs the programs, stripped, into
# .device/programs.tar.gz: that machine has CUDA but no crate registry, so the
# `device` tool carries them (`carry: [".device"]`, with the 35 MB tree well
# inside its 64 MiB) and tools/device/run.sh unpacks and runs them.
#
#     bash tools/device/build.sh        # ~4 min from an empty target folder
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"
bin=$(mktemp -d)/bin
mkdir -p "$bin" .device

# Cargo names each built program in its JSON messages; keep the executables.
executables() {
    cargo "$@" --message-format=json-render-diagnostics |
        python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])'
}
copy() { # copy EXECUTABLE NAME
    cp "$1" "$bin/$2"
    strip --strip-debug "$bin/$2"
}

copy "$(executables build --release -p msn-cli --features cuda)" msn
copy "$(executables test --release --no-run -p ops --features cuda --test gpu_vs_cpu)" gpu_vs_cpu
copy "$(executables test --release --no-run -p msn --features cuda --test device)" device
copy "$(executables bench --no-run --features cuda --bench gpu)" gpu_bench
du -sh "$bin"/*
tar -czf .device/programs.tar.gz -C "$(dirname "$bin")" bin
du -sh .device/programs.tar.gz
