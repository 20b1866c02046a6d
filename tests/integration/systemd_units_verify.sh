#!/usr/bin/env bash
# systemd-analyze verify on containers/systemd/*: unit syntax, known keys and
# values, the .socket's service, and ExecStart's binary (the installed path
# /usr/local/bin/occasional is replaced by this build's, in a copy).
# systemd-analyze exits 0 on unknown keys and unparsable values (it only
# warns), so any output fails the test too; a deliberately broken copy
# checks first that it does report in this environment (no systemd as PID 1
# needed). Exit 77 (skipped) only when systemd-analyze cannot run at all.
set -uo pipefail
units="$1"
bin="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if ! systemd-analyze --version >/dev/null 2>&1; then
  echo "SKIP: systemd-analyze cannot run here (install Debian's systemd package: scripts/dev.sh deps)"
  exit 77
fi

mkdir "$work/broken" "$work/units"
sed 's/^Type=notify$/Type=notifyy/' "$units/occasional.service" >"$work/broken/occasional.service"
out="$(cd "$work/broken" && systemd-analyze verify --man=no ./occasional.service 2>&1)"
if [[ "$out" != *"notifyy"* ]]; then
  echo "FAIL: systemd-analyze verify did not report a bad Type= here; its output was:"
  echo "$out"
  exit 1
fi

for f in occasional.service occasional.socket; do
  [[ -f "$units/$f" ]] || { echo "FAIL: $units/$f is missing"; exit 1; }
  sed "s#/usr/local/bin/occasional#$bin#g" "$units/$f" >"$work/units/$f"
done
grep -q "^ExecStart=$bin " "$work/units/occasional.service" || {
  echo "FAIL: ExecStart of occasional.service does not run /usr/local/bin/occasional"
  exit 1
}
out="$(cd "$work/units" && systemd-analyze verify --man=no ./occasional.socket ./occasional.service 2>&1)"
rc=$?
if [[ $rc -ne 0 || -n "$out" ]]; then
  echo "FAIL: systemd-analyze verify (exit $rc):"
  echo "$out"
  exit 1
fi
echo "ok: occasional.socket and occasional.service verify cleanly"
