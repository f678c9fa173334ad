"""Models cross between Python and C++ bit for bit, in both directions.

Needs the C++ example program built against the installed CMake package
(cpp/examples) of a core with the wheel's GEMM backend (CHAINRULE_BLAS=
scipy-openblas): two builds that multiply with different libraries sum in
different orders. .ci/run builds it and points CHAINRULE_EXAMPLE_BIN at it.
Without it these tests skip.
"""

import os
import pathlib
import subprocess

import numpy as np
import pytest

import chainrule as cr

EXAMPLE = os.environ.get("CHAINRULE_EXAMPLE_BIN")
RINGS = pathlib.Path(__file__).resolve().parents[2] / "cpp" / "examples" / "data" / "rings.csv"

pytestmark = pytest.mark.skipif(not EXAMPLE, reason="CHAINRULE_EXAMPLE_BIN (the built cpp/examples program) not set")


def run_example(*args):
    result = subprocess.run([EXAMPLE, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_python_model_predicts_identically_in_cpp(tmp_path, dtype):
    net = cr.Network([5, 7, 3, 2], activation=["tanh", "relu"], output="sigmoid", loss="bce", dtype=dtype, seed=4)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 5)).astype(dtype)
    y = (rng.random((40, 2)) < 0.5).astype(dtype)
    net.fit(X, y, epochs=3, lr=0.3, batch_size=8, seed=1)
    net.save(tmp_path / "model.crnn")
    # Exact decimal text: every float32/float64 value round-trips through %.17g.
    np.savetxt(tmp_path / "X.csv", X.astype(np.float64), fmt="%.17g", delimiter=",")
    run_example("predict", tmp_path / "model.crnn", tmp_path / "X.csv", tmp_path / "out.csv")
    from_cpp = np.loadtxt(tmp_path / "out.csv", delimiter=",", ndmin=2).astype(dtype)
    assert from_cpp.shape == (40, 2)
    assert np.array_equal(from_cpp, net.predict(X))


def test_cpp_model_predicts_identically_in_python(tmp_path):
    run_example("train", RINGS, tmp_path / "rings.crnn")  # trains, saves, reloads in C++
    data = np.loadtxt(RINGS, delimiter=",", skiprows=1)
    net = cr.Network.load(tmp_path / "rings.crnn")
    assert net.layer_sizes == (2, 8, 1) and net.dtype == np.float64
    X = np.ascontiguousarray(data[:, :2])
    np.savetxt(tmp_path / "X.csv", X, fmt="%.17g", delimiter=",")
    run_example("predict", tmp_path / "rings.crnn", tmp_path / "X.csv", tmp_path / "out2.csv")
    from_cpp = np.loadtxt(tmp_path / "out2.csv", delimiter=",", ndmin=2)
    assert np.array_equal(from_cpp, net.predict(X))
    assert np.mean((net.predict(X)[:, 0] > 0.5) == (data[:, 2] > 0.5)) >= 0.9
