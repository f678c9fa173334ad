"""W4's training step against its eight matrix products alone, on one thread: what the rest of a step costs.

    python bench/w4_products.py
    python bench/w4_products.py --dtype float64
    OPENBLAS_CORETYPE=Haswell python bench/w4_products.py

A W4 step (784-256-256-10, batch 64; docs/math.md) makes eight products:
three forward (Z = b, then Z += A W^T), three weight gradients added onto
the weights (W += -lr dZ^T A, the step taken inside the backward pass) and
two input gradients (dA = dZ W). This times those eight products alone,
with the same shapes, transposes, alpha and beta, through the OpenBLAS
chainrule multiplies with (scipy-openblas32's cblas, one thread), and then
chainrule's whole step (`Network.fit` on the suite's W4 data, batch 64).
(On a CPU without AVX-512, the core computes the 10-output layer's forward
in float64 with its own panel kernel, kernels/panel_linear.cpp, not
OpenBLAS: 2% of the step's multiply-adds. On one with AVX-512 the panel
kernel makes all three forward products, in both dtypes: there the step is
set against OpenBLAS's products, as the step before that kernel made them,
and what it spends beyond them can come out negative.)
The step's time beyond the products is what the bias, the activations,
their derivatives, the loss and the bound of the update cost; the products'
own GFLOP/s, against a 2048^3 product of the same library, is how near the
GEMM itself comes to the ceiling at these shapes. Each figure is the best
of --repeats; the products, whole and in the core's tiles, and the step
are alternated. The products are made twice: one call each, and cut into
the tiles the core cuts them into (cpp/src/runtime/gemm.hpp; one thread
makes the same calls as two), each tile one call; their times are net of
what a call costs through ctypes (a 1x1x1 product), which chainrule's own
calls do not pay.
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
from gemm_rows import NO_TRANS, ROW_MAJOR, TRANS, gemm_of, openblas  # noqa: E402

LAYERS = (784, 256, 256, 10)
BATCH = 64
# The core's tiling of a product (cpp/src/runtime/gemm.hpp): kGemmMaxTiles, kGemmTileMinWork, kGemmTileAlign.
MAX_TILES, TILE_MIN_WORK, TILE_ALIGN = 8, 2**21, 64


def core_tiles(M: int, N: int, K: int) -> tuple:
    """How the core cuts a product of C (M, N) with inner size K into tiles, each one backend call: (rows,
    [first row or column of each tile, ..., M or N]). The rule of cpp/src/runtime/gemm.hpp (gemm_tiling),
    which depends on the shape alone, so one thread makes the same calls as two."""
    rows = M >= N
    side = M if rows else N
    tiles = 1
    while tiles < MAX_TILES and M * N * K / (2 * tiles) >= TILE_MIN_WORK and side // (2 * tiles) >= TILE_ALIGN:
        tiles *= 2
    blocks = -(-side // TILE_ALIGN)
    return rows, [min(i * blocks // tiles * TILE_ALIGN, side) for i in range(tiles + 1)]


def gemm_calls(gemm, itemsize: int, tiled: bool, ta: bool, tb: bool, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):
    """The backend calls of C = alpha op(A) op(B) + beta C (row-major; addresses in bytes), one per tile."""
    rows, bounds = core_tiles(M, N, K) if tiled else (True, [0, M])
    calls = []
    for begin, end in zip(bounds, bounds[1:]):
        if rows:  # rows [begin, end) of C and of op(A)
            a, b, c, m, n = A + (begin if ta else begin * lda) * itemsize, B, C + begin * ldc * itemsize, end - begin, N
        else:     # columns [begin, end) of C and of op(B)
            a, b, c, m, n = A, B + (begin * ldb if tb else begin) * itemsize, C + begin * itemsize, M, end - begin
        calls.append(functools.partial(gemm, ROW_MAJOR, TRANS if ta else NO_TRANS, TRANS if tb else NO_TRANS,
                                       m, n, K, alpha, a, lda, b, ldb, beta, c, ldc))
    return calls


def products(lib, dtype, lr: float, tiled: bool = True):
    """The step's eight products, as (name, flop, calls) in the order a step makes them, each product's
    calls cut into the core's tiles (or one call each, tiled=False), and their arrays (inputs A, weights
    W, outputs Z, which double as dZ, and input gradients dA), to keep alive beside the calls' addresses."""
    gemm = gemm_of(lib, dtype)
    size = np.dtype(dtype).itemsize
    rng = np.random.default_rng(0)
    A = [rng.standard_normal((BATCH, n)).astype(dtype) for n in LAYERS[:-1]]  # each layer's input
    W = [(rng.standard_normal((n_out, n_in)) * 0.05).astype(dtype) for n_in, n_out in zip(LAYERS, LAYERS[1:])]
    Z = [np.zeros((BATCH, n), dtype) for n in LAYERS[1:]]      # forward outputs, and their gradients dZ
    dA = [np.empty((BATCH, n), dtype) for n in LAYERS[1:-1]]   # input gradients of layers 2 and 3
    a, w, z, da = ([x.ctypes.data for x in arrays] for arrays in (A, W, Z, dA))
    products = []
    for i, (n_in, n_out) in enumerate(zip(LAYERS, LAYERS[1:])):  # Z_i += A_i W_i^T, onto the bias
        products.append((f"forward {n_in}->{n_out}", 2 * BATCH * n_in * n_out, gemm_calls(
            gemm, size, tiled, False, True, BATCH, n_out, n_in, 1, a[i], n_in, w[i], n_in, 1, z[i], n_out)))
    for i in reversed(range(len(W))):
        n_in, n_out = LAYERS[i], LAYERS[i + 1]
        if i > 0:  # dA_i = dZ_i W_i, from the weights before the step
            products.append((f"input gradient {n_out}->{n_in}", 2 * BATCH * n_in * n_out, gemm_calls(
                gemm, size, tiled, False, False, BATCH, n_in, n_out, 1, z[i], n_out, w[i], n_in, 0, da[i - 1], n_in)))
        products.append((f"weight gradient {n_in}x{n_out}", 2 * BATCH * n_in * n_out, gemm_calls(  # W_i += -lr dZ_i^T A_i
            gemm, size, tiled, True, False, n_out, n_in, BATCH, -lr, z[i], n_out, a[i], n_in, 1, w[i], n_in)))
    return products, (A, W, Z, dA)


def ceiling(lib, dtype, repeats: int) -> float:
    """GFLOP/s of one 2048^3 product of the same library, one thread."""
    gemm = gemm_of(lib, dtype)
    n = 2048
    rng = np.random.default_rng(1)
    A, B, C = (rng.standard_normal((n, n)).astype(dtype) for _ in range(3))
    best = float("inf")
    for _ in range(max(3, repeats // 4)):
        start = time.perf_counter()
        gemm(ROW_MAJOR, NO_TRANS, TRANS, n, n, n, 1, A.ctypes.data, n, B.ctypes.data, n, 0, C.ctypes.data, n)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def best_seconds(calls, steps: int, repeats: int) -> float:
    """Seconds per step of making these backend calls, best of `repeats` timings of `steps` steps."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            for call in calls:
                call()
        best = min(best, (time.perf_counter() - start) / steps)
    return best


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
    whole, _whole_arrays = products(lib, dtype, lr=1e-6, tiled=False)
    tiled, _tiled_arrays = products(lib, dtype, lr=1e-6, tiled=True)
    workload = BY_NAME["W4"]
    X, Y = make_data(workload, BATCH * args.steps, dtype)
    weights, biases = initial_params(workload, dtype)
    net = chainrule.Network(list(LAYERS), activation="sigmoid", output="sigmoid", loss="bce", dtype=dtype, seed=0)
    for view, value in zip(net.weights, weights):
        view[...] = value
    for view, value in zip(net.biases, biases):
        view[...] = value

    # What a call costs through ctypes, which chainrule's own calls do not pay: a 1x1x1 product.
    gemm = gemm_of(lib, dtype)
    one = np.ones(1, dtype)
    tiny = functools.partial(gemm, ROW_MAJOR, NO_TRANS, TRANS, 1, 1, 1, 1, one.ctypes.data, 1, one.ctypes.data, 1, 0,
                             one.ctypes.data, 1)
    whole_calls = [call for _, _, calls in whole for call in calls]
    tiled_calls = [call for _, _, calls in tiled for call in calls]
    best = {"whole": float("inf"), "tiled": float("inf"), "step": float("inf"), "call": float("inf")}
    for _ in range(args.repeats):  # the four alternated, each timing of `steps` steps
        best["whole"] = min(best["whole"], best_seconds(whole_calls, args.steps, 1))
        best["tiled"] = min(best["tiled"], best_seconds(tiled_calls, args.steps, 1))
        start = time.perf_counter()
        net.fit(X, Y, epochs=1, lr=0.05, batch_size=BATCH, shuffle=False)
        best["step"] = min(best["step"], (time.perf_counter() - start) / args.steps)
        best["call"] = min(best["call"], best_seconds([tiny], args.steps, 1))
    call = best["call"]
    each = [best_seconds(calls, args.steps, args.repeats) - len(calls) * call for _, _, calls in whole]
    in_tiles = [best_seconds(calls, args.steps, args.repeats) - len(calls) * call for _, _, calls in tiled]
    best["whole"] -= len(whole_calls) * call
    best["tiled"] -= len(tiled_calls) * call
    roof = ceiling(lib, dtype, args.repeats)
    flop = sum(f for _, f, _ in whole)

    def rate(f, seconds):
        return f"{f / seconds / 1e9:.1f} ({f / seconds / 1e9 / roof:.0%})"

    print(f"OpenBLAS {lib.scipy_openblas_get_corename().decode()} kernels, {args.dtype}, one thread; "
          f"ceiling (one 2048^3 product): {roof:.1f} GFLOP/s; the products' times are net of the "
          f"{call * 1e6:.2f} us a call costs through ctypes")
    print("| product | one call: us | GFLOP/s (% of ceiling) | the core's tiles | us | GFLOP/s (% of ceiling) |")
    print("|---|---|---|---|---|---|")
    for (name, f, calls), seconds, tiled_seconds in zip(tiled, each, in_tiles):
        print(f"| {name} | {seconds * 1e6:.1f} | {rate(f, seconds)} | {len(calls)} | {tiled_seconds * 1e6:.1f} | "
              f"{rate(f, tiled_seconds)} |")
    print(f"| the eight in a row | {best['whole'] * 1e6:.1f} | {rate(flop, best['whole'])} | {len(tiled_calls)} | "
          f"{best['tiled'] * 1e6:.1f} | {rate(flop, best['tiled'])} |")
    print(f"chainrule's whole step: {best['step'] * 1e6:.1f} us, {rate(flop, best['step'])} GFLOP/s")
    beyond = best["step"] - best["tiled"]
    print(f"the step beyond its products in the core's tiles: {beyond * 1e6:.1f} us ({beyond / best['step']:.0%} "
          "of the step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
