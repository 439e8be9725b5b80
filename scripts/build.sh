#!/bin/bash
# build.sh [DIR [CMAKE ARGS...]]: installs dependencies, configures and builds.
# A development build: warnings are errors (FT_WERROR=ON) unless the environment
# says FT_WERROR=OFF; later CMAKE ARGS override the defaults here
# (e.g. -DCMAKE_BUILD_TYPE=Release).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFT_WERROR="${FT_WERROR:-ON}" \
	"$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
