"""The measurement scripts of bench/ that docs/performance.md quotes: they run, and measure what they say.

Short runs only; the figures themselves are in docs/performance.md.
"""

import importlib.util
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from chainrule.bench.workloads import BY_NAME

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"


def load(name):
    """The script as a module, with sys.path as it was and no module of bench/ left in sys.modules:
    w4_products puts bench/ on sys.path to import gemm_rows, and bench/ holds names (distributed.py)
    that would shadow packages that later tests import, in this process and in the processes it spawns."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    path, modules = list(sys.path), set(sys.modules)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path
        for added in set(sys.modules) - modules:
            if str(getattr(sys.modules[added], "__file__", "")).startswith(str(BENCH)):
                del sys.modules[added]
    return module


@pytest.mark.parametrize("tiled", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_w4_products_are_the_eight_products_of_a_w4_step(dtype, tiled):
    w4_products = load("w4_products")
    assert str(BENCH) not in sys.path and "gemm_rows" not in sys.modules
    calls, (A, W, Z, dA) = w4_products.products(w4_products.openblas(), dtype, lr=0.5, tiled=tiled)
    workload = BY_NAME["W4"]
    assert w4_products.LAYERS == workload.layer_sizes and w4_products.BATCH == workload.batch_size
    # Every multiply-add of the step that the suite counts, and no other.
    assert len(calls) == 8
    assert sum(flop for _, flop, _ in calls) == workload.flops_per_record() * workload.batch_size
    # The calls compute what a step's products are: Z = A W^T, dA = dZ W, then W += -lr dZ^T A.
    before = [w.copy() for w in W]
    for _, _, tiles in calls:
        assert len(tiles) >= 1 if tiled else len(tiles) == 1
        for tile in tiles:
            tile()
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for i in range(3):  # Z doubles as dZ: the products' speed does not depend on the values
        assert np.allclose(Z[i], A[i] @ before[i].T, rtol=tol, atol=tol)
        assert np.allclose(W[i], before[i] - 0.5 * Z[i].T @ A[i], rtol=tol, atol=tol)
    assert np.allclose(dA[1], Z[2] @ before[2], rtol=tol, atol=tol)
    assert np.allclose(dA[0], Z[1] @ before[1], rtol=tol, atol=tol)


def test_w4_products_cuts_the_products_as_the_core_does():
    w4_products = load("w4_products")
    # The constants are the core's (cpp/src/runtime/gemm.hpp)...
    header = (BENCH.parent / "cpp" / "src" / "runtime" / "gemm.hpp").read_text()
    assert re.search(r"kGemmTileMinWork = double\(std::size_t\{1\} << (\d+)\)", header)[1] == "21"
    assert w4_products.TILE_MIN_WORK == 2**21
    assert int(re.search(r"kGemmMaxTiles = (\d+);", header)[1]) == w4_products.MAX_TILES
    assert int(re.search(r"kGemmTileAlign = (\d+);", header)[1]) == w4_products.TILE_ALIGN
    # ...and so is the rule (gemm_tiling, cpp/src/runtime/gemm.cpp), here on W4's shapes and two others:
    # the longer side of C, in powers of two while each tile keeps 2^21 multiply-adds and 64 rows or columns.
    core_tiles = w4_products.core_tiles
    assert core_tiles(64, 256, 784) == (False, [0, 64, 128, 192, 256])  # forward 784->256
    assert core_tiles(64, 256, 256) == (False, [0, 128, 256])           # forward 256->256: 2^22, two tiles
    assert core_tiles(64, 10, 256) == (True, [0, 64])                   # forward 256->10: one call
    assert core_tiles(256, 784, 64) == (False, [0, 192, 384, 576, 784])  # weight gradient 784x256: 13 blocks
    assert core_tiles(1000, 30, 10000) == (True, [0, 128, 256, 384, 512, 640, 768, 896, 1000])  # at most 8
    assert core_tiles(128, 4096, 4096) == (False, [0, 512, 1024, 1536, 2048, 2560, 3072, 3584, 4096])


def test_w4_products_prints_the_step_against_its_products():
    run = subprocess.run([sys.executable, str(BENCH / "w4_products.py"), "--steps", "2", "--repeats", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("OpenBLAS ") and "one thread" in lines[0]
    assert sum(line.startswith("| forward ") or line.startswith("| input gradient ")
               or line.startswith("| weight gradient ") for line in lines) == 8
    assert any(line.startswith("chainrule's whole step: ") for line in lines)
    assert lines[-1].startswith("the step beyond its products in the core's tiles:")


def test_gemm_rows_counts_the_elements_that_differ_from_one_call():
    run = subprocess.run([sys.executable, str(BENCH / "gemm_rows.py"), "--shape", "256", "64", "32",
                          "--rows", "256", "64", "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = [line.split("|") for line in run.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [int(row[0]) for row in rows] == [256, 64]
    assert int(rows[0][2]) == 0  # the product in one call is the reference itself


def test_the_w6_breakdown_runs_and_reports_every_row():
    # python -m chainrule.bench.estimators, which docs/performance.md quotes ("W6"): one short run.
    pytest.importorskip("sklearn")
    pytest.importorskip("threadpoolctl")
    run = subprocess.run([sys.executable, "-m", "chainrule.bench.estimators", "--epochs", "2", "--rounds", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ") and not line.startswith("| |")]
    assert len(rows) == 7 and rows[0].startswith("| chainrule.sklearn.MLPRegressor.fit")
    assert all(float(row.split("|")[2]) > 0 for row in rows)


def test_latency_times_one_record_of_each_workload_in_each_build():
    # bench/latency.py, which docs/performance.md quotes: one round, the same Python as both builds.
    run = subprocess.run([sys.executable, str(BENCH / "latency.py"), "--a", sys.executable, "--b", sys.executable,
                          "--workloads", "W2", "W4", "--rounds", "1"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rounds = re.findall(r"^round 1 ([AB]): W2 ([\d.]+) / ([\d.]+)  W4 ([\d.]+) / ([\d.]+)$", run.stdout, re.M)
    assert [label for label, *_ in rounds] == ["A", "B"]
    for _, *figures in rounds:
        w2_best, w2_median, w4_best, w4_median = map(float, figures)
        assert min(w2_best, w2_median, w4_best, w4_median) > 0
        assert max(w2_best, w2_median) < min(w4_best, w4_median)  # W4's network: ~500 times W2's multiply-adds
