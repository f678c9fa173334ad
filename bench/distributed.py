"""Data-parallel training's speed: K processes x 1 thread against 1 process x 1 and x 2 threads.

    python bench/distributed.py [--workloads W4 W5] [--steps N] [--processes 2]

Every configuration trains the same number of steps of the same global batch
(the workload's batch_size, float64, records in order, plain SGD) from the
same initial parameters (chainrule.bench.workloads). The distributed run
(``mpiexec -n K`` on this script, each process holding batch/K records of
every step) also reports the time per step spent in the reducer (the MPI sum,
the GIL taken for it included, and the wait for the slower process) and the
time of one such sum alone, both processes entering it together. Before timing, each configuration's final
parameters are checked against the one-process run's (within 1e-10 relative).
Prints one table row per workload and configuration.

    python bench/distributed.py --compare-sums

times the fixed-order sum against MPI_Allreduce(MPI_SUM) on buffers the size
of W4's and W5's gradients.

    python bench/distributed.py --model [--gflops 2000] [--dtype float32]

prints instead the on-paper step time of each workload on k = 1..64 machines
over 10 and 100 Gbit/s links (docs/performance.md explains the model): a
machine computes the step's share at --gflops GFLOP/s, then the gradient is
summed (every machine sends and receives 2 (k-1)/k of its bytes, as a ring
allreduce, or the reduce-scatter + allgather of RankOrderSum, does), with a
latency of --latency-us per message round (2 (k-1) rounds), no overlap.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import chainrule
from chainrule.bench.workloads import BY_NAME, initial_params, make_data


def network_for(workload):
    hidden = workload.activations[:-1]
    net = chainrule.Network(list(workload.layer_sizes), activation=list(hidden) or "sigmoid",
                            output=workload.output, loss=workload.loss, dtype="float64")
    weights, biases = initial_params(workload, np.float64)
    for w, b, w0, b0 in zip(net.weights, net.biases, weights, biases):
        w[...] = w0
        b[...] = b0
    return net


def one_process(workload, steps, threads):
    chainrule.set_num_threads(threads)
    X, Y = make_data(workload, steps * workload.batch_size, np.float64)
    net = network_for(workload)
    net.fit(X[:workload.batch_size], Y[:workload.batch_size], epochs=1, batch_size=workload.batch_size,
            shuffle=False, lr=workload.lr)  # warm-up: the workspace, the pool, the caches
    net = network_for(workload)
    start = time.perf_counter()
    net.fit(X, Y, epochs=1, batch_size=workload.batch_size, shuffle=False, lr=workload.lr)
    return time.perf_counter() - start, net._core.params().copy()


def worker(workload, steps, out):
    """One process of the distributed run (under mpiexec)."""
    from mpi4py import MPI

    from chainrule import distributed

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    chainrule.set_num_threads(1)
    local = workload.batch_size // size
    X, Y = make_data(workload, steps * workload.batch_size, np.float64)
    # Step j's global batch is records [j B, (j + 1) B); rank r holds the r-th
    # slice of each, so the steps equal one_process's.
    rows = np.concatenate([np.arange(j * workload.batch_size + rank * local,
                                     j * workload.batch_size + (rank + 1) * local) for j in range(steps)])
    X, Y = np.ascontiguousarray(X[rows]), np.ascontiguousarray(Y[rows])

    class TimedSum(distributed.RankOrderSum):
        seconds = 0.0

        def __call__(self, values):
            start = time.perf_counter()
            super().__call__(values)
            TimedSum.seconds += time.perf_counter() - start

    def train(records):
        net = network_for(workload)
        reducer = TimedSum(comm)
        net._fit(X[:records], Y[:records], 1, workload.lr, local, False, 0, None, 10, None, False, None,
                 None, 0.0, None, None, reducer=reducer, agree=distributed._agreement(comm))
        return net

    train(local)  # warm-up
    comm.Barrier()
    TimedSum.seconds = 0.0
    start = time.perf_counter()
    net = train(len(X))
    seconds = time.perf_counter() - start
    # The sum alone, both processes starting it together (a barrier first):
    # what a step's reduction costs without waiting for a slower peer.
    buffer = net._core.params().copy()
    reducer, alone = distributed.RankOrderSum(comm), []
    for _ in range(5):
        comm.Barrier()
        start = time.perf_counter()
        reducer(buffer)
        alone.append(time.perf_counter() - start)
    if rank == 0:
        np.save(os.path.join(out, "params.npy"), net._core.params())
        with open(os.path.join(out, "times.json"), "w") as f:
            json.dump({"seconds": seconds, "reducer_seconds": TimedSum.seconds, "sum_alone": min(alone)}, f)


def sum_worker(out):
    """RankOrderSum against MPI_Allreduce(MPI_SUM) on float64 buffers the size of W4's and W5's gradients."""
    from mpi4py import MPI

    from chainrule import distributed

    comm = MPI.COMM_WORLD
    reducer = distributed.RankOrderSum(comm)
    rows = []
    for name in ("W4", "W5"):
        sizes = BY_NAME[name].layer_sizes
        values = np.ones(sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:])))
        best = {}
        for label, call in [("RankOrderSum", lambda: reducer(values)),
                            ("MPI_Allreduce", lambda: comm.Allreduce(MPI.IN_PLACE, values))]:
            times = []
            for _ in range(7):
                comm.Barrier()
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            best[label] = min(times)
        rows.append((name, values.size, best["RankOrderSum"], best["MPI_Allreduce"]))
    if comm.Get_rank() == 0:
        with open(os.path.join(out, "sums.json"), "w") as f:
            json.dump(rows, f)


def compare_sums(processes):
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([mpiexec_path(), "-n", str(processes), sys.executable, __file__, "--worker", "sum",
                        "--out", out], check=True, timeout=600)
        rows = json.load(open(os.path.join(out, "sums.json")))
    print(f"float64 sums over {processes} processes, best of 7 (barrier first)")
    print("| buffer | values | RankOrderSum, s | MPI_Allreduce, s | ratio |")
    print("|---|---|---|---|---|")
    for name, size, ordered, allreduce in rows:
        print(f"| {name}'s gradient | {size:,} | {ordered:.4f} | {allreduce:.4f} | {ordered / allreduce:.2f} |")


def mpiexec_path():
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def distributed_run(workload, steps, processes):
    mpiexec = mpiexec_path()
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        subprocess.run([mpiexec, "-n", str(processes), sys.executable, __file__, "--worker", workload.name,
                        "--steps", str(steps), "--out", out], check=True, env=env, timeout=3600)
        times = json.load(open(os.path.join(out, "times.json")))
        return (times["seconds"], times["reducer_seconds"], times["sum_alone"],
                np.load(os.path.join(out, "params.npy")))


def step_model(workload, machines, gbits, gflops, dtype_bytes, latency_us):
    """(compute, communication) seconds of one synchronous step of the workload's batch on `machines`."""
    flops = workload.flops_per_record() * workload.batch_size
    sizes = workload.layer_sizes
    params = sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    compute = flops / (gflops * 1e9) / machines
    if machines == 1:
        return compute, 0.0
    moved = 2 * (machines - 1) / machines * params * dtype_bytes
    return compute, moved / (gbits * 1e9 / 8) + 2 * (machines - 1) * latency_us * 1e-6


def print_model(names, gflops, dtype, latency_us):
    dtype_bytes = {"float32": 4, "float64": 8}[dtype]
    machines = [1, 2, 4, 8, 16, 32, 64]
    print(f"Step time (ms) and speed-up over one machine; {gflops:g} GFLOP/s per machine, {dtype} gradients, "
          f"{latency_us:g} us per message round, no overlap of communication with computation")
    print("| workload | link | " + " | ".join(f"k={k}" for k in machines) + " |")
    print("|---|---|" + "---|" * len(machines))
    for name in names:
        workload = BY_NAME[name]
        for gbits in (10, 100):
            one = sum(step_model(workload, 1, gbits, gflops, dtype_bytes, latency_us))
            cells = []
            for k in machines:
                step = sum(step_model(workload, k, gbits, gflops, dtype_bytes, latency_us))
                cells.append(f"{step * 1e3:.3g} ({one / step:.2g}x)")
            print(f"| {name} (batch {workload.batch_size}) | {gbits} Gbit/s | " + " | ".join(cells) + " |")
    print()
    print("The same machines, each keeping the workload's batch (the global batch grows to k x batch): "
          "records/s over one machine's")
    print("| workload | link | " + " | ".join(f"k={k}" for k in machines) + " |")
    print("|---|---|" + "---|" * len(machines))
    for name in names:
        workload = BY_NAME[name]
        for gbits in (10, 100):
            one = sum(step_model(workload, 1, gbits, gflops, dtype_bytes, latency_us))
            cells = []
            for k in machines:
                # k machines, each computing a whole batch: one step's compute is one machine's.
                compute, communication = step_model(workload, k, gbits, gflops, dtype_bytes, latency_us)
                cells.append(f"{k * one / (compute * k + communication):.2g}x")
            print(f"| {name} (batch {workload.batch_size} each) | {gbits} Gbit/s | " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["W4", "W5"])
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default: W4 64, W5 4)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--compare-sums", action="store_true",
                        help="time RankOrderSum against MPI_Allreduce on gradient-sized buffers instead")
    parser.add_argument("--model", action="store_true", help="print the on-paper model instead of measuring")
    parser.add_argument("--gflops", type=float, default=2000.0, help="--model: a machine's GFLOP/s")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="--model: gradient dtype")
    parser.add_argument("--latency-us", type=float, default=5.0, help="--model: microseconds per message round")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "sum":
        sum_worker(args.out)
        return
    if args.worker:
        worker(BY_NAME[args.worker], args.steps, args.out)
        return
    if args.compare_sums:
        compare_sums(args.processes)
        return
    if args.model:
        print_model(args.workloads, args.gflops, args.dtype, args.latency_us)
        return
    k = args.processes
    print("| workload | configuration | s/step | speed-up vs 1x1 | in the reducer, s/step (share) | "
          "the sum alone, s |")
    print("|---|---|---|---|---|---|")
    for name in args.workloads:
        workload = BY_NAME[name]
        steps = args.steps or {"W5": 4}.get(name, 64)
        if workload.batch_size % k:
            raise SystemExit(f"{name}: batch {workload.batch_size} does not split over {k} processes")
        t1, reference = one_process(workload, steps, 1)
        t2, params2 = one_process(workload, steps, 2)
        tk, reduce_seconds, sum_alone, paramsk = distributed_run(workload, steps, k)
        scale = np.abs(reference).max()
        for label, params in [("1 x 2 threads", params2), (f"{k} processes", paramsk)]:
            error = np.abs(params - reference).max() / scale
            if error > 1e-10:
                raise SystemExit(f"{name} {label}: parameters differ from 1 x 1 by {error:.1e} relative")
        for label, seconds, extra in [("1 process x 1 thread", t1, " |"), ("1 process x 2 threads", t2, " |"),
                                      (f"{k} processes x 1 thread", tk,
                                       f"{reduce_seconds / steps:.4f} ({reduce_seconds / tk:.0%}) | "
                                       f"{sum_alone:.4f}")]:
            print(f"| {name} | {label} | {seconds / steps:.4f} | {t1 / seconds:.2f} | {extra} |")


if __name__ == "__main__":
    main()
