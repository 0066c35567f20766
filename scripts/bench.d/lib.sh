# Helpers for the limiter modes under scripts/bench.d/modes: processes
# started and stopped by PID, redis-server, and the load of the machine, on
# top of common.sh.
# Sourced, not run; the sourcing script sets `set -euo pipefail` and $out_dir.
# shellcheck shell=bash
# out_dir comes from the sourcing script; other_load is read there.
# shellcheck disable=SC2154,SC2034

# shellcheck source=scripts/bench.d/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# --- Processes ------------------------------------------------------------------

started=()   # PIDs of every long-running process started here
cleanup_done=0

# Stops PID and its descendants: SIGTERM, then SIGKILL for what is left after 5 s.
stop_tree() {
  local all=() pid
  mapfile -t all < <(tree_pids "$1")
  [ ${#all[@]} -eq 0 ] && return 0
  kill -TERM "$1" 2>/dev/null || true
  local deadline=$((SECONDS + 5)) alive=("${all[@]}")
  while [ ${#alive[@]} -gt 0 ] && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.1
    mapfile -t alive < <(for pid in "${alive[@]}"; do running "$pid" && echo "$pid"; done)
  done
  for pid in "${alive[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait "$1" 2>/dev/null || true
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  [ "$cleanup_done" = 1 ] && return
  cleanup_done=1
  local pid
  for pid in "${started[@]}"; do stop_tree "$pid"; done
  started=()
}
trap cleanup EXIT
trap 'log "interrupted; stopping what was started"; exit 130' INT
trap 'log "terminated; stopping what was started"; exit 143' TERM

# start_process NAME COMMAND...: starts a long-running process with its
# output in $out_dir/NAME.stdout and .stderr; sets $last_pid.
start_process() {
  local name=$1
  shift
  "$@" >"$out_dir/$name.stdout" 2>"$out_dir/$name.stderr" &
  last_pid=$!
  started+=("$last_pid")
}

# stop_process PID: stops one process started here, before the end.
stop_process() {
  local kept=() pid
  stop_tree "$1"
  for pid in "${started[@]}"; do [ "$pid" = "$1" ] || kept+=("$pid"); done
  started=("${kept[@]}")
}

# start_redis NAME PORT: a redis-server of its own on 127.0.0.1:PORT, no
# persistence; waits until it answers.
start_redis() {
  local name=$1 port=$2
  mkdir -p "$out_dir/$name"
  start_process "$name" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$out_dir/$name"
  local pid=$last_pid deadline=$((SECONDS + 10))
  until [ "$(redis-cli -p "$port" PING 2>/dev/null)" = PONG ]; do
    running "$pid" || die "redis-server exited at start; see $out_dir/$name.stderr"
    [ $SECONDS -lt $deadline ] || die "redis-server did not answer within 10 s"
    sleep 0.05
  done
  last_pid=$pid
}

# Waits until GET http://127.0.0.1:PORT/PATH answers with 200, for at most 15 s.
wait_http() {
  local port=$1 path=$2 pid=$3 name=$4
  local deadline=$((SECONDS + 15))
  while [ $SECONDS -lt $deadline ]; do
    running "$pid" || die "$name exited at start; see $out_dir/$name.stderr"
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$path")" = 200 ]; then
      return 0
    fi
    sleep 0.1
  done
  die "$name did not answer on 127.0.0.1:$port within 15 s; see $out_dir/$name.stderr"
}

# --- The machine's load -------------------------------------------------------------

# measured COMMAND...: runs COMMAND and sets $other_load, the percent of all
# CPUs that the rest of the machine used meanwhile (its busy time less what
# this script and its children used).
measured() {
  local machine_before own_before started_at status=0 clk_tck
  clk_tck=$(getconf CLK_TCK)
  machine_before=$(machine_busy_ticks)
  own_before=$(cpu_ticks $$)
  started_at=$(date +%s%N)
  "$@" || status=$?
  local own_after machine_after
  own_after=$(cpu_ticks $$)
  machine_after=$(machine_busy_ticks)
  other_load=$(awk -v m=$((machine_after - machine_before)) -v o=$((own_after - own_before)) \
    -v ns=$(($(date +%s%N) - started_at)) -v hz="$clk_tck" -v n="$(nproc)" \
    'BEGIN {v = 100 * (m - o) / (ns / 1e9 * hz * n); printf "%.1f", v < 0 ? 0 : v}')
  return $status
}

# The load average, as uptime prints it.
load_average() {
  uptime | sed 's/.*load average: //'
}

# A few lines on the machine and the build, for the report.
describe_machine() {
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)," \
    "$(uname -sr), $(awk -F= '$1 == "PRETTY_NAME" {gsub("\"", "", $2); print $2}' /etc/os-release)"
  echo "- clock source: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown)"
  echo "- redis-server: $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/')"
  echo "- source tree: $(git describe --always --dirty 2>/dev/null || echo unknown)"
}
