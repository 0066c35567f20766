#!/usr/bin/env python3
"""Counts admitted and refused requests per second from access logs.

usage: limiter_accuracy.py LIMIT FIRST LAST LOG...

Reads each access log (one JSON object per line, docs/OBSERVABILITY.md),
takes the second of `ts` (UTC, when the exchange ended) and its `status`,
and prints a markdown table for the full seconds FIRST..LAST (Unix seconds):
admitted (every status but 429), refused (429), the statuses other than 200
and 429 among them, and admitted / limit, with the check of the target: every
second within 1% above the limit and at least 95% of it. Exits 0 when every
second passes, 1 when one does not, 2 on bad input.
"""

import calendar
import re
import sys
import time
from collections import Counter, defaultdict

TS = re.compile(r'"ts":"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)')
STATUS = re.compile(r'"status":(\d+)')
UPPER = 1.01
LOWER = 0.95


def main(argv):
    if len(argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    limit, first, last = int(argv[1]), int(argv[2]), int(argv[3])
    per_second = defaultdict(Counter)
    epoch_of = {}
    unreadable = 0
    for path in argv[4:]:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                ts, status = TS.search(line), STATUS.search(line)
                if not ts or not status:
                    unreadable += 1
                    continue
                key = ts.group(0)
                second = epoch_of.get(key)
                if second is None:
                    second = calendar.timegm(tuple(int(g) for g in ts.groups()))
                    epoch_of[key] = second
                per_second[second][int(status.group(1))] += 1

    print("| second (UTC) | admitted (not 429) | refused (429) | other than 200 and 429 | admitted / limit | within +1% / -5% |")
    print("|---|---|---|---|---|---|")
    admitted_list = []
    failed = 0
    offered_total = 0
    for second in range(first, last + 1):
        counts = per_second.get(second, Counter())
        refused = counts[429]
        admitted = sum(n for status, n in counts.items() if status != 429)
        others = sum(n for status, n in counts.items() if status not in (200, 429))
        ratio = admitted / limit
        ok = LOWER * limit <= admitted <= UPPER * limit
        failed += not ok
        admitted_list.append(admitted)
        offered_total += admitted + refused
        clock = time.strftime("%H:%M:%S", time.gmtime(second))
        print(f"| {clock} | {admitted:,} | {refused:,} | {others:,} | {ratio:.4f} | {'yes' if ok else 'NO'} |")
    seconds = last - first + 1
    print()
    print(f"- full seconds: {seconds}; admitted per second: min {min(admitted_list):,}, "
          f"max {max(admitted_list):,} (limit {limit:,}: {min(admitted_list) / limit:.4f} to "
          f"{max(admitted_list) / limit:.4f})")
    print(f"- answered per second (admitted and refused): {offered_total / seconds:,.0f}, "
          f"{offered_total / seconds / limit:.1f} times the limit")
    if unreadable:
        print(f"- access lines without ts or status: {unreadable}")
    verdict = "met" if failed == 0 else f"NOT met in {failed} of {seconds} seconds"
    print(f"- every full second within 1% above the limit and at least 95% of it: {verdict}")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
