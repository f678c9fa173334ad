"""Two builds of chainrule, timed in turns: A, B, A, B, ... on the same workloads.

Compares two versions of the code on one machine in one sitting: each round
runs bench/steadiness.py once per build, per workload and thread count, so
that a change in the machine's speed over time falls on both alike. Give the
Python of each build (a venv with that build installed):

    python bench/ab.py --a old/.venv/bin/python --b .venv/bin/python --workloads W4 W5 --threads 1 2

It prints each round's samples/s (the median of steadiness.py's runs) and, per
workload and thread count, the median over the rounds and B's ratio to A.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

STEADINESS = Path(__file__).resolve().parent / "steadiness.py"


def median_rate(python: str, workload: str, threads: int, runs: int, dtype: str) -> float:
    out = subprocess.run([python, str(STEADINESS), workload, "--threads", str(threads), "--runs", str(runs),
                          "--dtype", dtype], capture_output=True, text=True, check=True).stdout
    return float(re.search(r"median ([\d,]+)", out).group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, help="the Python of build A (the baseline)")
    parser.add_argument("--b", required=True, help="the Python of build B")
    parser.add_argument("--workloads", nargs="+", default=["W4", "W5"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5, help="epochs timed per steadiness.py call")
    options = parser.parse_args()

    rates = {}
    for round_ in range(options.rounds):
        for workload in options.workloads:
            for threads in options.threads:
                for build in ("a", "b"):
                    rate = median_rate(getattr(options, build), workload, threads, options.runs, options.dtype)
                    rates.setdefault((workload, threads, build), []).append(rate)
                    print(f"round {round_ + 1}: {workload} {threads} thread(s) {build.upper()}: {rate:,.0f} samples/s",
                          flush=True)
    print(f"\n{options.dtype}, median over {options.rounds} rounds (samples/s):")
    print("| workload | threads | A | B | B / A |\n|---|---|---|---|---|")
    for workload in options.workloads:
        for threads in options.threads:
            a = statistics.median(rates[(workload, threads, "a")])
            b = statistics.median(rates[(workload, threads, "b")])
            print(f"| {workload} | {threads} | {a:,.0f} | {b:,.0f} | {b / a:.3f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
