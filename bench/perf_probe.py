"""A quick probe of chainrule's training speed against a plain NumPy loop.

Not the benchmark suite (that is bench/run.py): a performance engineer's probe.
Trains W1-W5 (issue 6) with chainrule and with a pure-NumPy implementation of
MATH.md's SGD loop, in the same process, from the same data; prints samples/s
(median of --repeat runs) and the ratio. Each thread count runs in its own
subprocess so that OPENBLAS_NUM_THREADS takes effect for NumPy.

    python bench/perf_probe.py                      # float32, 1 and 2 threads
    python bench/perf_probe.py --dtype float64 --threads 1 --workloads W4,W5
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WORKLOADS = {
    # name: (layer sizes, hidden activation, output, loss, batch, records)
    "W1": ([30, 1], "sigmoid", "sigmoid", "bce", 1, 20000),
    "W2": ([30, 16, 1], "sigmoid", "sigmoid", "bce", 32, 20000),
    "W3": ([10, 32, 1], "sigmoid", "identity", "mse", 32, 20000),
    "W4": ([784, 256, 256, 10], "sigmoid", "sigmoid", "bce", 64, 6400),
    "W5": ([1024, 4096, 4096, 16], "sigmoid", "sigmoid", "bce", 1024, 2048),
}


def make_data(sizes, loss, records, dtype, np):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((records, sizes[0])).astype(dtype)
    if loss == "bce":
        Y = (rng.random((records, sizes[-1])) < 0.5).astype(dtype)
    else:
        Y = rng.standard_normal((records, sizes[-1])).astype(dtype)
    return X, Y


def numpy_fit(params, acts, loss, X, Y, lr, batch, epochs, rng, np, expit):
    """MATH.md's mini-batch SGD with shuffling, in plain NumPy."""
    n = X.shape[0]
    dtype = X.dtype.type
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            xb, yb = X[idx], Y[idx]
            outs = [xb]
            z = None
            for (W, b), act in zip(params, acts):
                z = outs[-1] @ W.T + b
                outs.append(expit(z) if act == "sigmoid" else z)
            a = outs[-1]
            rows = xb.shape[0]
            if loss == "bce":
                cost = float(np.sum(np.maximum(z, 0) - z * yb + np.log1p(np.exp(-np.abs(z))))) / rows
                dz = (a - yb) * dtype(1.0 / rows)
            else:
                cost = float(np.sum((a - yb) ** 2)) / rows
                dz = (a - yb) * dtype(2.0 / rows)
                if acts[-1] == "sigmoid":
                    dz *= a * (1 - a)
            if not np.isfinite(cost):
                raise FloatingPointError
            grads = []
            for l in range(len(params) - 1, -1, -1):
                W, b = params[l]
                grads.append((dz.T @ outs[l], dz.sum(axis=0)))
                if l > 0:
                    dz = dz @ W
                    if acts[l - 1] == "sigmoid":
                        a_prev = outs[l]
                        dz *= a_prev * (1 - a_prev)
            for (W, b), (dW, db) in zip(params, reversed(grads)):
                W -= dtype(lr) * dW
                b -= dtype(lr) * db


CLOCK = time.perf_counter


def timed(fn, min_seconds):
    """Calls fn(epochs) with epochs grown until a call takes min_seconds; returns (epochs, seconds)."""
    epochs = 1
    while True:
        t0 = CLOCK()
        fn(epochs)
        dt = CLOCK() - t0
        if dt >= min_seconds or epochs >= 1 << 16:
            return epochs, dt
        epochs = max(epochs * 2, int(epochs * min_seconds / max(dt, 1e-6) * 1.2))


def child(args):
    global CLOCK
    if args.cpu_time:
        CLOCK = time.process_time
    import numpy as np
    import chainrule
    try:
        from scipy.special import expit
    except ImportError:
        def expit(z):
            return np.exp(-np.logaddexp(0, -z)).astype(z.dtype)
    if hasattr(chainrule, "set_num_threads"):
        chainrule.set_num_threads(args.threads)
    results = {}
    for name in args.workloads.split(","):
        sizes, hidden, output, loss, batch, records = WORKLOADS[name]
        X, Y = make_data(sizes, loss, records, args.dtype, np)
        net = chainrule.Network(sizes, activation=hidden, output=output, loss=loss, dtype=args.dtype, seed=1)
        acts = list(net.activations)
        cr, npy = [], []
        for rep in range(args.repeat):
            epochs, dt = timed(lambda e: net.fit(X, Y, epochs=e, lr=0.01, batch_size=batch, shuffle=True, seed=rep),
                               args.min_seconds)
            cr.append(epochs * records / dt)
            if not args.no_numpy:
                params = [(w.copy(), b.copy()) for w, b in zip(net.weights, net.biases)]
                rng = np.random.default_rng(rep)
                epochs, dt = timed(lambda e: numpy_fit(params, acts, loss, X, Y, 0.01, batch, e, rng, np, expit),
                                   args.min_seconds)
                npy.append(epochs * records / dt)
        entry = {"chainrule": statistics.median(cr)}
        if npy:
            entry["numpy"] = statistics.median(npy)
        results[name] = entry
    if args.predict:
        sizes, hidden, output, loss, _, _ = WORKLOADS["W2"]
        net = chainrule.Network(sizes, activation=hidden, output=output, loss=loss, dtype=args.dtype, seed=1)
        x = np.random.default_rng(0).standard_normal((1, sizes[0])).astype(args.dtype)
        lat = []
        for _ in range(args.repeat):
            calls = 100000
            t0 = CLOCK()
            for _ in range(calls):
                net.predict(x)
            lat.append((CLOCK() - t0) / calls * 1e6)
        results["predict1_us"] = statistics.median(lat)
    print(json.dumps(results))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--workloads", default="W1,W2,W3,W4,W5")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=0.3)
    parser.add_argument("--no-numpy", action="store_true")
    parser.add_argument("--predict", action="store_true", help="also time a single-record W2 predict")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with the process's CPU time, not the wall clock: steadier on a shared machine, "
                             "meaningful at 1 thread only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.threads = int(args.threads)
        return child(args)
    table = {}
    for t in args.threads.split(","):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=t, OMP_NUM_THREADS=t, MKL_NUM_THREADS=t)
        cmd = [sys.executable, __file__, "--child", "--threads", t, "--dtype", args.dtype, "--workloads",
               args.workloads, "--repeat", str(args.repeat), "--min-seconds", str(args.min_seconds)]
        cmd += ["--no-numpy"] * args.no_numpy + ["--predict"] * args.predict + ["--cpu-time"] * args.cpu_time
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        table[t] = json.loads(out.strip().splitlines()[-1])
    print(f"dtype {args.dtype}, median of {args.repeat}, samples/s ({'CPU' if args.cpu_time else 'wall'} time)")
    print(f"{'workload':8} {'threads':>7} {'chainrule':>12} {'numpy':>10} {'ratio':>8}")
    for t, results in table.items():
        for name, r in results.items():
            if name == "predict1_us":
                print(f"predict(1 record) W2, {t} threads: {r:.2f} us")
                continue
            npv = r.get("numpy")
            ratio = f"{r['chainrule'] / npv:8.2f}" if npv else ""
            print(f"{name:8} {t:>7} {r['chainrule']:12.4g} {npv if npv else float('nan'):10.4g} {ratio}")


if __name__ == "__main__":
    main()
