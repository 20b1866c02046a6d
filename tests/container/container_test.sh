#!/usr/bin/env bash
# The image end to end (ctest label `container`): base images from
# debootstrap, the multi-stage build with podman, then the container runs:
# a request through the gateway reaches a worker, the admin endpoint's
# metrics pass promtool, and SIGTERM (podman stop) ends it with status 0
# within the grace. Needs root, podman, debootstrap (scripts/dev.sh container).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
podman=(podman --storage-driver vfs --runtime runc)
limits=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
image=localhost/occasional:test
name="occasional-test-$$"
fail() { echo "container_test: FAIL: $*" >&2; exit 1; }
cleanup() { "${podman[@]}" rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT

containers/base-images.sh
"${podman[@]}" build -q --format docker "${limits[@]}" -f containers/Containerfile -t "$image" . >/dev/null ||
  fail "podman build"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"
admin="$(free_port)"
# The admin endpoint is published only because it is configured so (--admin
# 0.0.0.0:9090), which needs a token (docs/admin.md).
token="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"${podman[@]}" run -d --name "$name" "${limits[@]}" -p "127.0.0.1:$port:8080" \
  -p "127.0.0.1:$admin:9090" "$image" \
  run --config /etc/occasional/occasional.json --admin 0.0.0.0:9090 --token "$token" >/dev/null

deadline=$((SECONDS + 30))
until curl -sf -m 2 "http://127.0.0.1:$admin/readyz" >/dev/null; do
  ((SECONDS < deadline)) || { "${podman[@]}" logs "$name" >&2; fail "never ready"; }
  sleep 0.2
done
body="$(curl -sf -m 5 "http://127.0.0.1:$port/through-the-gateway")" || fail "no 200 from a worker"
[[ "$body" == "hello from hello pid "*" path /through-the-gateway" ]] || fail "unexpected body: $body"
curl -sf -m 5 "http://127.0.0.1:$admin/metrics" >"${TMPDIR:-/tmp}/occasional-metrics-$$.txt" ||
  fail "no metrics"
problems="$(promtool check metrics <"${TMPDIR:-/tmp}/occasional-metrics-$$.txt" 2>&1)" ||
  fail "promtool: $problems"
[[ -z "$problems" ]] || fail "promtool: $problems"
grep -q '^occasional_connections_handed_off_total 1$' "${TMPDIR:-/tmp}/occasional-metrics-$$.txt" ||
  fail "handed_off is not 1"
rm -f "${TMPDIR:-/tmp}/occasional-metrics-$$.txt"
health="$("${podman[@]}" healthcheck run "$name" 2>&1)" || fail "HEALTHCHECK: $health"

# podman stop sends the STOPSIGNAL (SIGTERM) and SIGKILLs after -t seconds.
grace=10
start=$(date +%s%N)
"${podman[@]}" stop -t $((grace + 5)) "$name" >/dev/null
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
code="$("${podman[@]}" inspect "$name" --format '{{.State.ExitCode}}')"
[[ "$code" == 0 ]] || { "${podman[@]}" logs "$name" >&2; fail "exit code $code after SIGTERM"; }
((elapsed_ms < grace * 1000)) || fail "stopping took ${elapsed_ms} ms, more than the ${grace} s grace"
"${podman[@]}" logs "$name" 2>&1 | grep -q '"event":"coordinator_exit","status":0' ||
  fail "no clean coordinator_exit in the log"
echo "container_test: ok (stopped in ${elapsed_ms} ms, exit code 0)"
