"""One product cut into calls of so many rows: the speed and the bits of OpenBLAS (scipy-openblas32, the wheel's).

    python bench/gemm_rows.py                          # W4's first layer: 2048 records, 784 inputs, 256 outputs
    python bench/gemm_rows.py --shape 2048 256 256 --dtype float64
    OPENBLAS_CORETYPE=Haswell python bench/gemm_rows.py
    python bench/gemm_rows.py --side-by-side 2          # as many copies at once, each on one thread

C (M, N) = A (M, K) @ B^T, B (N, K), row-major, as chainrule's linear layer
calls it, on one OpenBLAS thread. For each count of rows per call: the
GFLOP/s of the whole product, best of --repeats, and how many elements
differ from the product made in one call. Every call packs all of B, so
few rows a call pay for the packing more often (docs/performance.md,
"W4's predict: chunks of 2048 records"); OPENBLAS_CORETYPE, set before the
library loads, picks another kernel's order. --side-by-side N starts N
copies of this script at once (each prints its own table): whether the
cores slow each other down.
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import sys
import time

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def openblas():
    import scipy_openblas32

    lib = ctypes.CDLL(scipy_openblas32.get_lib_dir() + "/" + scipy_openblas32.get_library(fullname=True))
    lib.scipy_openblas_get_corename.restype = ctypes.c_char_p
    for gemm, scalar in ((lib.scipy_cblas_sgemm, ctypes.c_float), (lib.scipy_cblas_dgemm, ctypes.c_double)):
        matrix = (ctypes.c_void_p, ctypes.c_int)
        gemm.argtypes = (*[ctypes.c_int] * 6, scalar, *matrix, *matrix, scalar, *matrix)
        gemm.restype = None
    lib.scipy_openblas_set_num_threads(1)
    return lib


def gemm_of(lib, dtype):
    """The library's cblas gemm for this dtype (float32 or float64)."""
    return lib.scipy_cblas_sgemm if dtype == np.float32 else lib.scipy_cblas_dgemm


def product(lib, dtype, A, B, C, rows):
    """C = A @ B.T in calls of `rows` rows of A and C."""
    gemm = gemm_of(lib, dtype)
    M, K = A.shape
    N = B.shape[0]
    for first in range(0, M, rows):
        r = min(rows, M - first)
        gemm(ROW_MAJOR, NO_TRANS, TRANS, r, N, K, 1, A[first:].ctypes.data, K, B.ctypes.data, K, 0,
             C[first:].ctypes.data, N)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[2048, 784, 256], metavar=("M", "K", "N"))
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--rows", type=int, nargs="+", default=[2048, 1024, 512, 256, 128, 64])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--side-by-side", type=int, default=1, metavar="N")
    args = parser.parse_args(argv)
    if args.side_by_side > 1:
        command = [sys.executable, __file__, "--shape", *map(str, args.shape), "--dtype", args.dtype,
                   "--rows", *map(str, args.rows), "--repeats", str(args.repeats)]
        children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(args.side_by_side)]
        outputs = [child.communicate()[0] for child in children]
        for i, output in enumerate(outputs):
            print(f"copy {i + 1} of {args.side_by_side}:\n{output}", end="")
        return max(child.returncode for child in children)
    lib = openblas()
    dtype = np.dtype(args.dtype).type
    M, K, N = args.shape
    rng = np.random.default_rng(0)
    A = rng.standard_normal((M, K)).astype(dtype)
    B = rng.standard_normal((N, K)).astype(dtype)
    whole = np.empty((M, N), dtype)
    product(lib, dtype, A, B, whole, M)
    print(f"OpenBLAS {lib.scipy_openblas_get_corename().decode()} kernel, {args.dtype}, "
          f"C ({M}, {N}) = A ({M}, {K}) @ B^T, one thread")
    print("rows per call | GFLOP/s | elements that differ from one call")
    for rows in args.rows:
        C = np.empty((M, N), dtype)
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            product(lib, dtype, A, B, C, rows)
            best = min(best, time.perf_counter() - start)
        differ = int(np.count_nonzero(C != whole))
        print(f"{rows:13d} | {2 * M * N * K / best / 1e9:7.1f} | {differ}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
