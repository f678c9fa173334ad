"""W4's training step against its eight matrix products alone, on one thread: what the rest of a step costs.

    python bench/w4_products.py
    python bench/w4_products.py --dtype float64
    OPENBLAS_CORETYPE=Haswell python bench/w4_products.py

A W4 step (784-256-256-10, batch 64; docs/math.md) makes eight products:
three forward (Z = A W^T), three weight gradients added onto the weights
(W += -lr dZ^T A, the step taken inside the backward pass) and two input
gradients (dA = dZ W). This times those eight calls alone, with the same
shapes, transposes, alpha and beta, through the OpenBLAS chainrule
multiplies with (scipy-openblas32's cblas, one thread), and then
chainrule's whole step (`Network.fit` on the suite's W4 data, batch 64).
The step's time beyond the products is what the bias, the activations,
their derivatives, the loss and the bound of the update cost; the products'
own GFLOP/s, against a 2048^3 product of the same library, is how near the
GEMM itself comes to the ceiling at these shapes. Each figure is the best
of --repeats; the two are alternated. The products' times are net of
what a call costs through ctypes (eight 1x1x1 products), which chainrule's
own calls do not pay.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before OpenBLAS loads

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gemm_rows import NO_TRANS, ROW_MAJOR, TRANS, openblas  # noqa: E402

LAYERS = (784, 256, 256, 10)
BATCH = 64


def products(lib, dtype, lr: float):
    """The step's eight calls, as (name, flop, call) in the order a step makes them, and their arrays
    (inputs A, weights W, outputs Z, which double as dZ, and input gradients dA), to keep alive beside them."""
    gemm = lib.scipy_cblas_sgemm if dtype == np.float32 else lib.scipy_cblas_dgemm
    rng = np.random.default_rng(0)
    A = [rng.standard_normal((BATCH, n)).astype(dtype) for n in LAYERS[:-1]]  # each layer's input
    W = [(rng.standard_normal((n_out, n_in)) * 0.05).astype(dtype) for n_in, n_out in zip(LAYERS, LAYERS[1:])]
    Z = [np.empty((BATCH, n), dtype) for n in LAYERS[1:]]      # forward outputs, and their gradients dZ
    dA = [np.empty((BATCH, n), dtype) for n in LAYERS[1:-1]]   # input gradients of layers 2 and 3
    calls = []  # each a partial of gemm with every argument bound, the arrays' addresses included
    for i, (n_in, n_out) in enumerate(zip(LAYERS, LAYERS[1:])):  # Z_i = A_i W_i^T
        calls.append((f"forward {n_in}->{n_out}", 2 * BATCH * n_in * n_out, functools.partial(
            gemm, ROW_MAJOR, NO_TRANS, TRANS, BATCH, n_out, n_in, 1, A[i].ctypes.data, n_in,
            W[i].ctypes.data, n_in, 0, Z[i].ctypes.data, n_out)))
    for i in reversed(range(len(W))):
        n_in, n_out = LAYERS[i], LAYERS[i + 1]
        if i > 0:  # dA_i = dZ_i W_i, from the weights before the step
            calls.append((f"input gradient {n_out}->{n_in}", 2 * BATCH * n_in * n_out, functools.partial(
                gemm, ROW_MAJOR, NO_TRANS, NO_TRANS, BATCH, n_in, n_out, 1, Z[i].ctypes.data, n_out,
                W[i].ctypes.data, n_in, 0, dA[i - 1].ctypes.data, n_in)))
        calls.append((f"weight gradient {n_in}x{n_out}", 2 * BATCH * n_in * n_out, functools.partial(
            gemm, ROW_MAJOR, TRANS, NO_TRANS, n_out, n_in, BATCH, -lr, Z[i].ctypes.data, n_out,  # W_i += -lr dZ_i^T A_i
            A[i].ctypes.data, n_in, 1, W[i].ctypes.data, n_in)))
    return calls, (A, W, Z, dA)  # the arrays: the calls hold their addresses, not them


def ceiling(lib, dtype, repeats: int) -> float:
    """GFLOP/s of one 2048^3 product of the same library, one thread."""
    gemm = lib.scipy_cblas_sgemm if dtype == np.float32 else lib.scipy_cblas_dgemm
    n = 2048
    rng = np.random.default_rng(1)
    A, B, C = (rng.standard_normal((n, n)).astype(dtype) for _ in range(3))
    best = float("inf")
    for _ in range(max(3, repeats // 4)):
        start = time.perf_counter()
        gemm(ROW_MAJOR, NO_TRANS, TRANS, n, n, n, 1, A.ctypes.data, n, B.ctypes.data, n, 0, C.ctypes.data, n)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--steps", type=int, default=200, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    dtype = np.dtype(args.dtype).type

    import chainrule
    from chainrule.bench.workloads import BY_NAME, initial_params, make_data

    chainrule.set_num_threads(1)
    lib = openblas()
    calls, _arrays = products(lib, dtype, lr=1e-6)
    workload = BY_NAME["W4"]
    X, Y = make_data(workload, BATCH * args.steps, dtype)
    weights, biases = initial_params(workload, dtype)
    net = chainrule.Network(list(LAYERS), activation="sigmoid", output="sigmoid", loss="bce", dtype=dtype, seed=0)
    for view, value in zip(net.weights, weights):
        view[...] = value
    for view, value in zip(net.biases, biases):
        view[...] = value

    each = [float("inf")] * len(calls)
    best_products = best_step = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            for _, _, call in calls:
                call()
        best_products = min(best_products, (time.perf_counter() - start) / args.steps)
        start = time.perf_counter()
        net.fit(X, Y, epochs=1, lr=0.05, batch_size=BATCH, shuffle=False)
        best_step = min(best_step, (time.perf_counter() - start) / args.steps)
    for k, (_, _, call) in enumerate(calls):  # each call on its own, for the table
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(args.steps):
                call()
            each[k] = min(each[k], (time.perf_counter() - start) / args.steps)
    roof = ceiling(lib, dtype, args.repeats)
    flop = sum(f for _, f, _ in calls)
    # What a call costs through ctypes, which chainrule's own calls do not pay: eight 1x1x1 products.
    gemm = lib.scipy_cblas_sgemm if dtype == np.float32 else lib.scipy_cblas_dgemm
    one = np.ones(1, dtype)
    tiny = functools.partial(gemm, ROW_MAJOR, NO_TRANS, TRANS, 1, 1, 1, 1, one.ctypes.data, 1, one.ctypes.data, 1, 0,
                             one.ctypes.data, 1)
    overhead = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps * 8):
            tiny()
        overhead = min(overhead, (time.perf_counter() - start) / args.steps)
    best_products -= overhead
    each = [seconds - overhead / 8 for seconds in each]

    print(f"OpenBLAS {lib.scipy_openblas_get_corename().decode()} kernels, {args.dtype}, one thread; "
          f"ceiling (one 2048^3 product): {roof:.1f} GFLOP/s; the products' times are net of the "
          f"{overhead / 8 * 1e6:.2f} us a call costs through ctypes")
    print("| product | us | GFLOP/s (% of ceiling) |")
    print("|---|---|---|")
    for (name, f, _), seconds in zip(calls, each):
        print(f"| {name} | {seconds * 1e6:.1f} | {f / seconds / 1e9:.1f} ({f / seconds / 1e9 / roof:.0%}) |")
    rate = flop / best_products / 1e9
    print(f"| the eight in a row | {best_products * 1e6:.1f} | {rate:.1f} ({rate / roof:.0%}) |")
    rate = flop / best_step / 1e9
    print(f"| chainrule's whole step | {best_step * 1e6:.1f} | {rate:.1f} ({rate / roof:.0%}) |")
    print(f"the step beyond its products: {(best_step - best_products) * 1e6:.1f} us "
          f"({(best_step - best_products) / best_step:.0%} of the step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
