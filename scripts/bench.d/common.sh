# Helpers every benchmark script shares: messages, Debian packages, process
# trees, free ports and CPU accounting. Sourced, not run, by scripts/bench,
# by lib.sh (the limiter modes) and by the profile and reload modes; each
# sets log_prefix before sourcing it to name itself in messages.
# shellcheck shell=bash

log() { echo "${log_prefix:-bench}: $*" >&2; }
die() { log "$*"; exit 1; }

# --- Packages -------------------------------------------------------------------

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

# --- CPU time -------------------------------------------------------------------

# Run time of PID's threads in nanoseconds: the scheduler's own account
# (/proc/PID/task/TID/schedstat), exact where utime and stime are sampled
# once per tick. 0 for a process that is gone.
process_ns() {
  local total=0 schedstat ns
  for schedstat in /proc/"$1"/task/*/schedstat; do
    read -r ns _ <"$schedstat" 2>/dev/null || continue
    total=$((total + ns))
  done
  echo "$total"
}

# The same for PID and all its descendants.
tree_ns() {
  local total=0 pid
  for pid in $(tree_pids "$1"); do total=$((total + $(process_ns "$pid"))); done
  echo "$total"
}

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
# Interrupt time is left out: the kernel charges it to no process, and most of
# it is the loopback traffic of the benchmark itself.
machine_busy_ticks() {
  awk '$1 == "cpu" {print $2 + $3 + $4 + $9; exit}' /proc/stat
}
