# Helpers for the modes under scripts/bench.d/modes: packages, processes
# started and stopped by PID, free ports, and the load of the machine.
# Sourced, not run; the sourcing script sets `set -euo pipefail` and $out_dir.
# shellcheck shell=bash
# out_dir comes from the sourcing script; other_load is read there.
# shellcheck disable=SC2154,SC2034

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }

# install_missing PACKAGE...: installs the Debian packages that are missing.
install_missing() {
  local missing=() package
  for package in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$package")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local as_root=()
  [ "$(id -u)" -ne 0 ] && as_root=(sudo)
  log "installing ${missing[*]}"
  # On stderr: stdout carries the report.
  "${as_root[@]}" apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

package_version() {
  dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo unknown
}

# --- Processes ------------------------------------------------------------------

started=()   # PIDs of every long-running process started here
cleanup_done=0

# The PID and all its descendants, one per line.
tree_pids() {
  local pid=$1 child
  [ -d "/proc/$pid" ] || return 0
  echo "$pid"
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
    tree_pids "$child"
  done
}

# True while PID exists and has not exited (a zombie has exited).
running() {
  kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

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

# Prints N free loopback TCP ports; every socket stays bound until all are chosen.
free_ports() {
  python3 -c '
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
' "$1"
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

# utime + stime (and those of reaped children) of a process tree, in ticks.
cpu_ticks() {
  local total=0 pid stat fields
  for pid in $(tree_pids "$1"); do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    read -ra fields <<<"${stat##*) }"
    total=$((total + fields[11] + fields[12] + fields[13] + fields[14]))
  done
  echo "$total"
}

# Busy ticks of the whole machine: user, nice, system and steal time of every CPU.
machine_busy_ticks() {
  awk '$1 == "cpu" {print $2 + $3 + $4 + $9; exit}' /proc/stat
}

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
