"""Single-record predict from Python, for two builds in turns: A, B, A, B, ...

The suite reports this latency for W2 only, once per run; comparing two
versions of the code needs them timed in turns, since this machine's speed
swings for seconds at a time. Each round starts a fresh process per build
and times `Network.predict` on one record of each workload's network (the
suite's weights and data): the best of many short `timeit` rounds, and the
suite's own figure (the median of groups of 50 calls, as the suite measures
it). Give the Python of each build (a venv with that build installed):

    python bench/latency.py --a old/.venv/bin/python --b .venv/bin/python --workloads W2 W4

or one Python alone (--b omitted) to time the build it has.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

WORKLOADS = Path(__file__).resolve().parent.parent / "python" / "chainrule" / "bench" / "workloads.py"

# What one round runs in each build's Python: prints "<workload> <best us> <median us>" lines. The
# workloads come from this checkout by path (as in steadiness.py), so that both builds predict with
# the same networks (from the build's package where bench/ was copied alone, as the wheels' tests
# do); the median is the suite's own measurement, from the build's package.
ROUND = r"""
import importlib.util, sys, timeit
import numpy as np
import chainrule
from chainrule.bench.measure import median_latency_us

if sys.argv[1]:
    spec = importlib.util.spec_from_file_location("_chainrule_bench_workloads", sys.argv[1])
    workloads = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = workloads
    spec.loader.exec_module(workloads)
else:  # no checkout beside this script (a copy of bench/ alone): the build's own
    from chainrule.bench import workloads

dtype = np.dtype(sys.argv[2])
for name in sys.argv[3:]:
    workload = workloads.BY_NAME[name]
    weights, biases = workloads.initial_params(workload, dtype)
    net = chainrule.Network(list(workload.layer_sizes), activation=workload.hidden, output=workload.output,
                            loss=workload.loss, dtype=dtype, seed=0)
    for view, value in zip(net.weights, weights):
        view[...] = value
    for view, value in zip(net.biases, biases):
        view[...] = value
    record = np.ascontiguousarray(workloads.make_data(workload, 1, dtype)[0])
    once = min(timeit.repeat(lambda: net.predict(record), number=1, repeat=5))
    number = max(1, int(2e-3 / max(1e-7, once)))  # rounds of about 2 ms
    best = min(timeit.repeat(lambda: net.predict(record), number=number, repeat=100)) / number
    print(name, best * 1e6, median_latency_us(lambda: net.predict(record), 200))
"""


def one_round(python: str, dtype: str, workloads: list) -> dict:
    path = str(WORKLOADS) if WORKLOADS.is_file() else ""
    run = subprocess.run([python, "-c", ROUND, path, dtype, *workloads], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{python} failed:\n{run.stderr}")
    out = run.stdout
    return {name: (float(best), float(median)) for name, best, median in (line.split() for line in out.splitlines())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", default=sys.executable, help="the Python of build A (the baseline)")
    parser.add_argument("--b", help="the Python of build B")
    parser.add_argument("--workloads", nargs="+", default=["W2"])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--rounds", type=int, default=4)
    options = parser.parse_args()
    builds = [("A", options.a)] + ([("B", options.b)] if options.b else [])
    print("microseconds a call: best of short rounds / the suite's median")
    for round_number in range(1, options.rounds + 1):
        for label, python in builds:
            figures = one_round(python, options.dtype, options.workloads)
            print(f"round {round_number} {label}: " +
                  "  ".join(f"{name} {best:.3f} / {median:.3f}" for name, (best, median) in figures.items()),
                  flush=True)


if __name__ == "__main__":
    main()
