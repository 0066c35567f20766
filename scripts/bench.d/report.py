#!/usr/bin/env python3
"""Turns the raw results of scripts/bench into a markdown report.

Reads the tab-separated records that scripts/bench wrote (results.tsv) and
prints a table with the median of each figure over the rounds, its ratio to
nginx's, and a check of the targets of the benchmark issue.
"""

import statistics
import sys
from collections import defaultdict

# Rows of the table, in this order; a target that was not run is left out.
TARGETS = [
    ("strangler", "strangler"),
    ("strangler-2w", "strangler, 2 workers"),
    ("nginx", "nginx"),
    ("haproxy", "HAProxy"),
    ("nghttpx", "nghttpx (h2c only)"),
    ("direct", "direct (upstream itself)"),
]
BASELINE = "nginx"
# Relative spread of a target's req/s over its rounds above which the report says so.
SPREAD_LIMIT = 0.15


def load(path):
    records = defaultdict(list)
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if fields and fields[0]:
                records[fields[0]].append(fields[1:])
    return records


class Results:
    """Medians per target from the raw records."""

    def __init__(self, records):
        self.config = {key: value for key, value in records["config"]}
        rounds = defaultdict(list)
        self.errors = defaultdict(int)
        self.other_load = []
        for target, _round, requests, duration_us, p50, p99, errors, cpu_ns, other in records["wrk"]:
            self.other_load.append(float(other))
            requests = int(requests)
            rounds[target].append({
                "rps": requests / (int(duration_us) / 1e6),
                "p50_ms": int(p50) / 1000,
                "p99_ms": int(p99) / 1000,
                "cpu_per_100k": float(cpu_ns) / 1e9 / requests * 100000 if requests else None,
            })
            self.errors[target] += int(errors)
        self.load = {
            target: {key: median([r[key] for r in values]) for key in values[0]}
            for target, values in rounds.items()
        }
        self.rounds = {target: len(values) for target, values in rounds.items()}
        self.by_round = rounds
        self.rps_range = {target: (min(r["rps"] for r in values), max(r["rps"] for r in values))
                          for target, values in rounds.items()}
        self.peak_kib = {target: int(kib) for target, kib in records["peak"]}

        h2_rounds = defaultdict(list)
        self.h2_unsupported = set()
        self.h2_failed = defaultdict(int)
        for target, round_name, *rest in records["h2"]:
            if round_name == "probe":
                if rest[0] == "unsupported":
                    self.h2_unsupported.add(target)
                continue
            rps, succeeded, total, other = rest
            h2_rounds[target].append(float(rps))
            self.other_load.append(float(other))
            self.h2_failed[target] += int(total) - int(succeeded)
        self.h2_rps = {target: median(values) for target, values in h2_rounds.items()}

        self.idle = {}
        for target, opened, failed, closed, base_kib, rss_kib in records["idle"]:
            self.idle[target] = {
                "opened": int(opened), "failed": int(failed), "closed": int(closed),
                "base_kib": int(base_kib), "rss_kib": int(rss_kib),
            }


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(value, base):
    if value is None or not base:
        return ""
    return f" ({value / base:.2f}×)"


def cell(value, base, text, is_baseline):
    if value is None:
        return "—"
    return text(value) + ("" if is_baseline else ratio(value, base))


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def table(results):
    idle_conns = results.config.get("idle_conns", "10000")
    header = ["target", "req/s", "p50", "p99", "CPU s / 100k req", "peak RSS",
              f"RSS, {int(idle_conns):,} idle conns", "h2c req/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base_load = results.load.get(BASELINE, {})
    base_idle = results.idle.get(BASELINE, {}).get("rss_kib")
    base_h2 = results.h2_rps.get(BASELINE)
    for target, label in TARGETS:
        if target not in results.load and target not in results.h2_rps and target not in results.h2_unsupported:
            continue
        figures = results.load.get(target, {})
        is_base = target == BASELINE

        def load_cell(key, text):
            return cell(figures.get(key), base_load.get(key), text, is_base)

        idle = results.idle.get(target)
        if target in results.h2_unsupported:
            h2 = "not supported"
        else:
            h2 = cell(results.h2_rps.get(target), base_h2, lambda v: f"{v:,.0f}", is_base)
        row = [
            label,
            load_cell("rps", lambda v: f"{v:,.0f}"),
            load_cell("p50_ms", lambda v: f"{v:.2f} ms"),
            load_cell("p99_ms", lambda v: f"{v:.2f} ms"),
            load_cell("cpu_per_100k", lambda v: f"{v:.2f}"),
            cell(results.peak_kib.get(target), results.peak_kib.get(BASELINE), mib, is_base),
            cell(idle["rss_kib"] if idle else None, base_idle, mib, is_base),
            h2,
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def notes(results):
    lines = []
    if results.other_load:
        worst = max(results.other_load)
        typical = statistics.median(results.other_load)
        limit = float(results.config.get("noisy_percent", "5"))
        retried = int(results.config.get("retries_used", "0"))
        again = f" {retried} disturbed round(s) were run again." if retried else ""
        if worst > limit:
            lines.append(f"- Warning: other processes used up to {worst:.0f}% of the machine's CPU during "
                         f"the rounds (median {typical:.0f}%); these figures are noisy.{again} Run again "
                         "on a quiet machine.")
        else:
            lines.append(f"- Other processes used at most {worst:.1f}% of the machine's CPU during the "
                         f"rounds.{again}")
    # Other virtual machines on the same host slow every target alike, and no
    # figure inside this one shows it; the spread of the rounds does.
    spread = {target: (low, high) for target, (low, high) in results.rps_range.items()
              if high and (high - low) / high > SPREAD_LIMIT}
    if spread:
        ranges = ", ".join(f"{target} {low:,.0f}–{high:,.0f}" for target, (low, high) in spread.items())
        lines.append(f"- The rounds differed by more than {SPREAD_LIMIT:.0%} (req/s: {ranges}). The "
                     "machine's speed changed during the run; the rounds alternate between targets, so "
                     "the ratios are more reliable than the absolute figures.")
    for target, count in results.errors.items():
        if count:
            lines.append(f"- {target}: {count} wrk errors (socket errors or non-2xx) over all rounds.")
    for target, count in results.h2_failed.items():
        if count:
            lines.append(f"- {target}: {count} h2load requests did not succeed over all rounds.")
    for target, idle in results.idle.items():
        if idle["failed"] or idle["closed"]:
            lines.append(f"- {target}: of the idle connections, {idle['failed']} could not be opened "
                         f"and {idle['closed']} were closed by the server before they were counted.")
    return lines


def check(name, value, limit, met):
    if value is None or limit is None:
        return f"| {name} | not measured | |"
    return f"| {name} | {value} | {'met' if met else 'not met'} |"


def targets(results):
    lines = ["| issue target | measured | |", "|---|---|---|"]
    ours = results.load.get("strangler", {})
    nginx = results.load.get("nginx", {})
    haproxy = results.load.get("haproxy", {})

    def fraction(key, base):
        if ours.get(key) is None or not base.get(key):
            return None
        return ours[key] / base[key]

    # The targets take turns, so a round of strangler and the same round of
    # nginx ran a few seconds apart: their ratio is spared most of the
    # machine's drift, and its range shows how far one run can be trusted.
    def by_round(key, base_target, text):
        pairs = zip(results.by_round.get("strangler", []), results.by_round.get(base_target, []))
        ratios = [a[key] / b[key] for a, b in pairs if a.get(key) and b.get(key)]
        if len(ratios) < 2:
            return text
        return f"{text} (by round {min(ratios):.2f}–{max(ratios):.2f})"

    rps_nginx = fraction("rps", nginx)
    lines.append(check("req/s ≥ 1.2× nginx", rps_nginx and by_round("rps", "nginx", f"{rps_nginx:.2f}× nginx"),
                       rps_nginx, rps_nginx is not None and rps_nginx >= 1.2))
    rps_haproxy = fraction("rps", haproxy)
    lines.append(check("req/s ≥ HAProxy", rps_haproxy and by_round("rps", "haproxy", f"{rps_haproxy:.2f}× HAProxy"),
                       rps_haproxy, rps_haproxy is not None and rps_haproxy >= 1.0))
    cpu = fraction("cpu_per_100k", nginx)
    lines.append(check("CPU per request ≤ 0.75× nginx", cpu and by_round("cpu_per_100k", "nginx", f"{cpu:.2f}× nginx"),
                       cpu, cpu is not None and cpu <= 0.75))
    p99 = fraction("p99_ms", nginx)
    lines.append(check("p99 ≤ nginx", p99 and by_round("p99_ms", "nginx", f"{p99:.2f}× nginx"), p99,
                       p99 is not None and p99 <= 1.0))

    ours_idle = results.idle.get("strangler", {}).get("rss_kib")
    nginx_idle = results.idle.get("nginx", {}).get("rss_kib")
    idle = ours_idle / nginx_idle if ours_idle and nginx_idle else None
    idle_conns = int(results.config.get("idle_conns", "10000"))
    lines.append(check(f"worker memory with {idle_conns:,} idle connections ≤ nginx",
                       idle and f"{idle:.2f}× nginx",
                       idle, idle is not None and idle <= 1.0))

    if "strangler" in results.h2_unsupported:
        lines.append("| h2c req/s ≥ HAProxy | not supported: the proxy does not serve HTTP/2 yet | not met |")
    else:
        ours_h2, haproxy_h2 = results.h2_rps.get("strangler"), results.h2_rps.get("haproxy")
        h2 = ours_h2 / haproxy_h2 if ours_h2 and haproxy_h2 else None
        lines.append(check("h2c req/s ≥ HAProxy", h2 and f"{h2:.2f}× HAProxy", h2, h2 is not None and h2 >= 1.0))

    two = results.load.get("strangler-2w", {}).get("rps")
    if two and ours.get("rps"):
        scale = two / ours["rps"]
        cpus = results.config.get("server_cpus", "?")
        lines.append(check("2 workers ≥ 1.8× 1 worker", f"{scale:.2f}× (server CPUs: {cpus})",
                           scale, scale >= 1.8))
    else:
        lines.append("| 2 workers ≥ 1.8× 1 worker | not measured (SCALING=1 measures it) | |")
    return lines


def settings(results):
    c = results.config
    return (f"Settings: {c.get('rounds')} round(s) of wrk -t{c.get('wrk_threads')} -c{c.get('connections')} "
            f"-d{c.get('duration')}s per target; h2load -c{c.get('h2_clients')} -m{c.get('h2_streams')} "
            f"-D {c.get('h2_duration')}s; load on CPU {c.get('load_cpus')}, targets and upstreams on "
            f"CPU {c.get('server_cpus')}; figures are medians over the rounds.")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: report.py RESULTS_TSV")
    results = Results(load(sys.argv[1]))
    out = table(results)
    out += ["", settings(results)]
    extra = notes(results)
    if extra:
        out += [""] + extra
    out += [""] + targets(results)
    print("\n".join(out))


if __name__ == "__main__":
    main()
