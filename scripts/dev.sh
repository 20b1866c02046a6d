#!/usr/bin/env bash
# One entry point for people and CI. Run as root on Debian 12.
#   scripts/dev.sh run     install what is missing, build (Release), run the main job
#   scripts/dev.sh test    install what is missing, build, run the whole test suite (ctest)
#   scripts/dev.sh asan    the test suite again, built with ASan + UBSan
#   scripts/dev.sh container  the image: lint, build with podman, run (minutes)
#   scripts/dev.sh fuzz    the libFuzzer targets (clang), each run FUZZ_SECONDS (default 60)
#   scripts/dev.sh build   install what is missing, build build/release (no tests)
#   scripts/dev.sh deps    only install what is missing
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
jobs="$(nproc)"
# Warnings are errors in CI (CI=true), and only warnings on a workstation.
werror=OFF
[[ -n "${CI:-}" ]] && werror=ON

# Build and test dependencies, all from Debian. Never an unversioned
# libboost-*-dev: it conflicts with libboost1.81-dev.
packages=(
  g++ cmake make pkg-config git ca-certificates
  libboost1.81-dev libsimdjson-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  curl python3 python3-yaml procps util-linux prometheus wrk nginx haproxy
  gunicorn uvicorn
  # systemd-socket-activate and systemd-analyze, for the tests of running under systemd
  systemd
  clang-14 libclang-rt-14-dev
  erlang-base libzmq3-dev
  chromium fonts-dejavu-core
  bc
)

deps() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
      echo "error: ${missing[*]} must be installed, and installing needs root (run as root or install them)" >&2
      exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# Only for the container test: podman, a base system made with debootstrap,
# and the image build file's linter (from npm; Node.js may not be Debian's).
container_deps() {
  local missing=()
  for p in podman runc debootstrap uidmap; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  command -v npm >/dev/null || missing+=(npm)
  if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  command -v dockerfilelint >/dev/null || npm install -g --silent dockerfilelint
}

build() {  # build DIR [cmake args...]
  local dir="$1"
  shift
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

cmd="${1:-}"
case "$cmd" in
  deps) deps ;;
  run)
    deps
    build build/release -DCMAKE_BUILD_TYPE=Release
    shift
    if (($#)); then
      exec build/release/gateway/occasional "$@"
    fi
    echo "occasional: gateway on 127.0.0.1:8080 with 4 HTTP example workers, admin endpoint on 127.0.0.1:9090." >&2
    echo "  try: curl http://127.0.0.1:8080/hello ; curl http://127.0.0.1:9090/metrics    (Ctrl-C stops gracefully)" >&2
    exec build/release/gateway/occasional run --listen 127.0.0.1:8080 --defer-accept --replicas 4 --log-format text \
      -- build/release/workers/http_hello_worker
    ;;
  build)
    deps
    build build/release -DCMAKE_BUILD_TYPE=Release -DOCCASIONAL_WERROR=$werror
    ;;
  test)
    deps
    build build/release -DCMAKE_BUILD_TYPE=Release -DOCCASIONAL_WERROR=$werror
    cd build/release
    ctest --output-on-failure -j "$jobs" --timeout 300 -LE container
    ;;
  container)
    deps
    container_deps
    build build/release -DCMAKE_BUILD_TYPE=Release -DOCCASIONAL_WERROR=$werror
    cd build/release
    ctest --output-on-failure --timeout 1800 -L container
    ;;
  asan)
    deps
    build build/asan -DCMAKE_BUILD_TYPE=Debug -DOCCASIONAL_SANITIZE=ON -DOCCASIONAL_WERROR=$werror
    cd build/asan
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      ctest --output-on-failure -j "$jobs" --timeout 300 -LE 'container|bench'
    ;;
  fuzz)
    deps
    CC=clang-14 CXX=clang++-14 build build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DOCCASIONAL_FUZZ=ON -Dfuzz_seconds="${FUZZ_SECONDS:-60}" -DOCCASIONAL_WERROR=$werror
    cd build/fuzz
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      ctest --output-on-failure -j "$jobs" -L fuzz
    ;;
  *)
    echo "usage: scripts/dev.sh run|test|asan|fuzz|container|build|deps" >&2
    exit 2
    ;;
esac
