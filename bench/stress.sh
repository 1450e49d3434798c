#!/usr/bin/env bash
# Stress run of hps (bun run stress): raises the open-file limit, then runs bench/stress/run.ts bounded in time; exits non-zero on failure.
# Usage: bench/stress.sh [--seconds 60] [--connections 10000] [--churn 100000]   (see --help)
set -euo pipefail
cd "$(dirname "$0")/.."

# 10,000 held connections need a descriptor each in the server and in the client (separate processes), plus headroom.
want_fds=32768
hard_fds=$(ulimit -Hn)
if [ "$hard_fds" = "unlimited" ] || [ "$hard_fds" -ge "$want_fds" ]; then
  ulimit -n "$want_fds"
else
  ulimit -n "$hard_fds"
  echo "stress: open-file limit raised to the hard limit $hard_fds (wanted $want_fds)" >&2
fi

# The whole run is bounded: its own budget (--seconds, default 60) plus start-up and shutdown slack, then SIGTERM
# (the runner stops its servers by PID), then SIGKILL.
budget=60
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --seconds) budget="${args[$((i + 1))]:-60}" ;;
    --seconds=*) budget="${args[$i]#--seconds=}" ;;
  esac
done
limit=$(( ${budget%.*} * 2 + 60 ))

exec timeout --signal=TERM --kill-after=15 "$limit" bun bench/stress/run.ts "$@"
