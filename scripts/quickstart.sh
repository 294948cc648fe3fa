#!/usr/bin/env bash
# Runs the README's quick start as a newcomer would, from the repository root: the run command
# taken from the README's first code block, then the README's curl commands against it.
#
# The run command is used as written except `--release`, which is dropped (the debug build that
# the test phase already made is the same binary, found the same way; a release build would
# add minutes to every CI run). Uses the README's defaults: 127.0.0.1:7700 and ./data (removed
# afterwards if this script created it).
set -euo pipefail
cd "$(dirname "$0")/.."

# The first ```sh block of the README is the run command; the block after "with curl" the API.
run_cmd=$(awk '/^```sh$/{f=1;next} /^```$/{if(f)exit} f' README.md)
curl_cmds=$(awk '/with curl:$/{s=1} s&&/^```sh$/{f=1;next} /^```$/{if(f)exit} f' README.md)
[ -n "$run_cmd" ] && [ -n "$curl_cmds" ] || { echo "quickstart: README blocks not found" >&2; exit 1; }
cmd=${run_cmd//--release /}
echo "quickstart: README says: $run_cmd; running: $cmd"

if curl -s -o /dev/null --max-time 1 http://127.0.0.1:7700/healthz; then
  echo "quickstart: something already listens on 127.0.0.1:7700; stop it first" >&2
  exit 1
fi
fresh_data=0
[ -e data ] || fresh_data=1
log=$(mktemp)
# shellcheck disable=SC2086
setsid $cmd >"$log" 2>&1 &
pid=$!
cleanup() {
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  [ "$fresh_data" = 1 ] && rm -rf data
  rm -f "$log"
}
trap cleanup EXIT

for _ in $(seq 1 600); do
  curl -sf -o /dev/null --max-time 1 http://127.0.0.1:7700/healthz && break
  kill -0 "$pid" 2>/dev/null || { echo "quickstart: the server exited:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.2
done
curl -sf -o /dev/null http://127.0.0.1:7700/healthz || { echo "quickstart: no /healthz within 120 s" >&2; cat "$log" >&2; exit 1; }

# The README's curl commands, verbatim; the last creates a room and must answer with its id.
out=$(bash -euo pipefail -c "$curl_cmds")
echo "quickstart: $out"
case "$out" in
  *'"room_id"'*) echo "quickstart: ok" ;;
  *) echo "quickstart: the README's curl commands did not create a room" >&2; cat "$log" >&2; exit 1 ;;
esac
