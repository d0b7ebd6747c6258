#!/usr/bin/env bash
# Builds here (x86-64) what a lent NVIDIA machine runs for the GPU figures, with
# the CUDA runtime compiled in, and packs the programs, stripped, into
# .device/programs.tar.xz: that machine has CUDA but no crate registry, so the
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
# The CPU test suite too, to run on that machine's host processor (its ISA may
# pick another gemm micro-kernel than this one's). The test binaries find their
# fixtures and the `msn` binary through the absolute paths compiled into them,
# which run.sh recreates there with a link; the list pairs each with the
# package folder that cargo would run it in.
cpu_target="$PWD/target"
CARGO_TARGET_DIR="$cpu_target" cargo build --release -p msn-cli
mkdir -p "$bin/cpu"
CARGO_TARGET_DIR="$cpu_target" cargo test --workspace --release --no-run \
    --message-format=json-render-diagnostics |
    python3 -c 'import json,os,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(os.path.dirname(m["manifest_path"]), m["executable"])' |
    while read -r package exe; do
        name=$(basename "$exe")
        copy "$exe" "cpu/$name"
        echo "$package $name" >>"$bin/cpu/list"
    done
copy "$cpu_target/release/msn" cpu/msn
echo "$PWD" >"$bin/cpu/root"
du -sh "$bin"/* "$bin"/cpu
# xz, not gzip: with the CPU suite, gzip's 38 MB and the 34 MB tree would
# pass the device tool's 64 MiB; xz packs the same into 20 MB.
rm -f .device/programs.tar.*
tar -cJf .device/programs.tar.xz -C "$(dirname "$bin")" bin
du -sh .device/programs.tar.xz
