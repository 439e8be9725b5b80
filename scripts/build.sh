#!/bin/bash
# build.sh [DIR [CMAKE ARGS...]]: installs dependencies, configures and builds.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
