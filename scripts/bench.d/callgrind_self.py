#!/usr/bin/env python3
"""Self cost per function of an uncompressed callgrind dump (--compress-strings=no).

Usage: callgrind_self.py DUMP DIVISOR [TOP]
Prints the total and the TOP functions by self cost, each divided by DIVISOR
(the number of requests), with the object file they belong to.
"""
import collections
import sys


def main():
    path, divisor = sys.argv[1], float(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
    self_cost = collections.Counter()
    calls_of = collections.Counter()
    ob = fn = ""
    after_calls = False
    cfn = ""
    with open(path, errors="replace") as dump:
        for line in dump:
            line = line.rstrip("\n")
            if not line:
                continue
            if line.startswith("ob="):
                ob = line[3:]
            elif line.startswith("fn="):
                fn = line[3:]
            elif line.startswith("cfn="):
                cfn = line[4:]
            elif line.startswith("calls="):
                after_calls = True
                calls_of[cfn] += int(line[6:].split()[0])
            elif line[0].isdigit() or line[0] in "+-*":
                parts = line.split()
                if len(parts) >= 2:
                    if after_calls:
                        after_calls = False
                    else:
                        self_cost[(fn, ob.rsplit("/", 1)[-1])] += int(parts[1])
    total = sum(self_cost.values())
    print(f"{'total':>10}  {total / divisor:10.0f}")
    per_object = collections.Counter()
    for (name, obj), cost in self_cost.items():
        per_object[obj] += cost
    print("  by object: " + ", ".join(f"{obj} {cost / divisor:.0f}" for obj, cost in per_object.most_common(6)))
    for (name, obj), cost in self_cost.most_common(top):
        calls = calls_of.get(name, 0) / divisor
        print(f"{cost / divisor:10.0f}  {100 * cost / total:5.1f}%  {calls:6.2f} calls  {name[:90]}  [{obj}]")


if __name__ == "__main__":
    main()
