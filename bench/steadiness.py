"""How steady is this machine? chainrule trains one workload again and again in
one process and prints each run's samples/s, so that a change in speed over
time (another tenant on a shared host, two virtual CPUs landing on one core)
shows apart from any change in the code.

    python bench/steadiness.py W4 --threads 2 --runs 40
    python bench/steadiness.py W1 --threads 1 --runs 20 --dtype float64

Each run is one epoch over the workload's records, in order, from where the
last run left off; the summary gives the spread (best, median, worst).
"""

from __future__ import annotations

import argparse
import statistics
import time
import importlib.util
import sys
from pathlib import Path

import numpy as np


def _load_workloads():
    """The suite's workloads from this checkout's python/chainrule/bench/workloads.py, by path.

    Not through `import chainrule.bench`: bench/ab.py runs this script with
    the Python of another build, perhaps one from before the suite moved into
    the package, and both builds must train the same workloads.
    """
    path = Path(__file__).resolve().parent.parent / "python" / "chainrule" / "bench" / "workloads.py"
    spec = importlib.util.spec_from_file_location("_chainrule_bench_workloads", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses looks its module up while the class is made
    spec.loader.exec_module(module)
    return module


_workloads = _load_workloads()
BY_NAME, initial_params, make_data = _workloads.BY_NAME, _workloads.initial_params, _workloads.make_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=sorted(BY_NAME))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    options = parser.parse_args()

    import chainrule

    chainrule.set_num_threads(options.threads)
    workload = BY_NAME[options.workload]
    dtype = np.dtype(options.dtype)
    X, Y = make_data(workload, workload.num_records, dtype)
    weights, biases = initial_params(workload, dtype)
    net = chainrule.Network(list(workload.layer_sizes), activation=workload.hidden, output=workload.output,
                            loss=workload.loss, dtype=dtype)
    for view, value in zip(net.weights + net.biases, weights + biases):
        view[...] = value
    net.fit(X[:workload.warmup_records], Y[:workload.warmup_records], epochs=1, lr=workload.lr,
            batch_size=workload.batch_size, shuffle=False)  # untimed: first-call set-up

    rates = []
    for run in range(options.runs):
        start = time.perf_counter()
        net.fit(X, Y, epochs=1, lr=workload.lr, batch_size=workload.batch_size, shuffle=False)
        rates.append(len(X) / (time.perf_counter() - start))
        print(f"run {run + 1:3d}: {rates[-1]:12,.0f} samples/s", flush=True)
    print(f"{workload.name} {options.dtype}, {options.threads} thread(s), {options.runs} runs: best "
          f"{max(rates):,.0f}, median {statistics.median(rates):,.0f}, worst {min(rates):,.0f} samples/s")


if __name__ == "__main__":
    main()
