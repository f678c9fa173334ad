"""Network on scipy.sparse X: the same results as on X.toarray() within rounding.

The core reads a CSR matrix in place and runs the first layer over its
stored entries (docs/math.md, "Sparse inputs"); its sums run in another order
than the dense product's, so the comparisons allow rounding, and the sparse
path's bits must not depend on the thread count.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

sparse = pytest.importorskip("scipy.sparse")

import chainrule as cr  # noqa: E402
from chainrule import optim  # noqa: E402

TOLERANCE = {"float32": 2e-4, "float64": 1e-10}

# (hidden activation, output, loss)
MODELS = [("relu", "softmax", "cce"), ("tanh", "sigmoid", "bce"), ("sigmoid", "identity", "mse")]


def make_sparse(num_records, num_features, num_outputs, loss, dtype, seed=0, density=0.05):
    """A CSR X with empty rows, and targets valid for `loss`."""
    rng = np.random.default_rng(seed)
    X = sparse.random(num_records, num_features, density=density, format="csr", dtype=np.float64,
                      random_state=seed, data_rvs=rng.standard_normal)
    X = sparse.csr_matrix(X.multiply(rng.random((num_records, 1)) > 0.1))  # some records hold no entry
    X.eliminate_zeros()
    if loss == "mse":
        y = rng.standard_normal((num_records, num_outputs))
    elif loss == "bce":
        y = (rng.random((num_records, num_outputs)) < 0.5).astype(np.float64)
    else:
        y = np.eye(num_outputs)[rng.integers(0, num_outputs, num_records)]
    return X.astype(dtype), np.ascontiguousarray(y, dtype=dtype)


def twins(model, num_features, num_outputs, dtype, hidden=(7,)):
    activation, output, loss = model
    net = cr.Network([num_features, *hidden, num_outputs], activation, output, loss, dtype=dtype, seed=3)
    return net, net.copy()


def assert_close(a, b, dtype):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(1.0, float(np.abs(b).max()) if b.size else 1.0)
    assert np.abs(a - b).max() <= TOLERANCE[dtype] * scale


def assert_same_params(a, b, dtype):
    for wa, wb in zip(a.weights + a.biases, b.weights + b.biases):
        assert_close(wa, wb, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", MODELS)
def test_predict_cost_and_gradients_match_the_dense_calls(dtype, model):
    X, y = make_sparse(60, 150, 3, model[2], dtype)
    net, _ = twins(model, 150, 3, dtype)
    assert_close(net.predict(X), net.predict(X.toarray()), dtype)
    assert_close(net.cost(X, y), net.cost(X.toarray(), y), dtype)
    weights = np.random.default_rng(1).random(60)
    assert_close(net.cost(X, y, sample_weight=weights), net.cost(X.toarray(), y, sample_weight=weights), dtype)
    for (dw, db), (ew, eb) in zip(net.gradients(X, y), net.gradients(X.toarray(), y)):
        assert_close(dw, ew, dtype)
        assert_close(db, eb, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("batch_size", [1, 7, 64])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fit_matches_the_dense_fit(dtype, model, batch_size, shuffle, optimizer):
    X, y = make_sparse(80, 120, 3, model[2], dtype, seed=batch_size)
    sparse_net, dense_net = twins(model, 120, 3, dtype)

    def fit(net, data):
        opt = optim.Adam(lr=0.01) if optimizer == "adam" else optim.SGD(lr=0.05, momentum=0.5)
        return net.fit(data, y, epochs=3, batch_size=batch_size, shuffle=shuffle, seed=5, optimizer=opt,
                       alpha=1e-3)

    assert_close(fit(sparse_net, X), fit(dense_net, X.toarray()), dtype)
    assert_same_params(sparse_net, dense_net, dtype)
    assert not np.array_equal(sparse_net.weights[0], twins(model, 120, 3, dtype)[0].weights[0])  # it trained


def test_one_record_steps_of_a_one_layer_network_match_the_fused_dense_path():
    # The dense fit takes these steps fused (record_steps); the CSR fit takes
    # the general path: the same steps within rounding.
    X, y = make_sparse(100, 40, 1, "bce", "float64")
    a = cr.Network([40, 1], output="sigmoid", loss="bce", seed=2)
    b = a.copy()
    assert_close(a.fit(X, y, epochs=3, batch_size=1, lr=0.3, seed=1),
                 b.fit(X.toarray(), y, epochs=3, batch_size=1, lr=0.3, seed=1), "float64")
    assert_same_params(a, b, "float64")


def test_sparse_fit_has_the_same_bits_at_any_thread_count(at_each_thread_count):
    X, y = make_sparse(300, 3000, 4, "cce", "float32", density=0.01)
    start = cr.Network([3000, 64, 4], "relu", "softmax", "cce", dtype="float32", seed=1)

    def run():
        net = start.copy()
        costs = net.fit(X, y, epochs=2, batch_size=32, seed=3, optimizer=optim.Adam(lr=1e-3), dropout=0.2)
        return costs.tobytes(), net._core.params().tobytes(), net.predict(X).tobytes()

    results = at_each_thread_count(run)
    assert all(r == results[0] for r in results)


@pytest.mark.parametrize("fmt", ["csc", "coo", "lil", "dok"])
def test_other_formats_are_converted_to_csr(fmt):
    X, y = make_sparse(30, 20, 2, "mse", "float64")
    net = cr.Network([20, 2], output="identity", loss="mse", seed=0)
    assert np.array_equal(net.predict(X.asformat(fmt)), net.predict(X))
    assert net.cost(X.asformat(fmt), y) == net.cost(X, y)


def test_csr_array_and_int64_indices_are_read_as_csr_matrix():
    X, y = make_sparse(40, 25, 2, "mse", "float64")
    net = cr.Network([25, 4, 2], "tanh", "identity", "mse", seed=0)
    wide = X.copy()
    wide.indices = wide.indices.astype(np.int64)
    wide.indptr = wide.indptr.astype(np.int64)
    expected = net.predict(X)
    assert np.array_equal(net.predict(sparse.csr_array(X)), expected)
    assert np.array_equal(net.predict(wide), expected)
    a, b = net.copy(), net.copy()
    assert np.array_equal(a.fit(wide, y, epochs=2, seed=0), b.fit(X, y, epochs=2, seed=0))
    assert np.array_equal(a._core.params(), b._core.params())


def test_unsorted_and_repeated_indices_mean_what_they_mean_in_scipy():
    # Row 0 stores column 3 twice (they add up) and its columns out of order.
    X = sparse.csr_matrix((np.array([1.0, 2.0, 0.5, -1.0]), np.array([3, 1, 3, 0]), np.array([0, 3, 3, 4])),
                          shape=(3, 4))
    assert not X.has_canonical_format
    net = cr.Network([4, 3, 2], "tanh", "identity", "mse", seed=0)
    dense = X.toarray()
    assert dense[0, 3] == 1.5
    assert_close(net.predict(X), net.predict(dense), "float64")
    y = np.ones((3, 2))
    for (dw, _), (ew, _) in zip(net.gradients(X, y), net.gradients(dense, y)):
        assert_close(dw, ew, "float64")


def test_an_all_zero_matrix_gives_the_bias_and_no_first_layer_weight_gradient():
    X = sparse.csr_matrix((5, 6))
    net = cr.Network([6, 2], output="identity", loss="mse", seed=0)
    net.biases[0][...] = [0.5, -1.0]
    assert np.array_equal(net.predict(X), np.tile([0.5, -1.0], (5, 1)))
    (dw, db), = net.gradients(X, np.zeros((5, 2)))
    assert not dw.any()
    assert np.array_equal(db, [1.0, -2.0])  # mean of 2 (z - y)


def test_the_csr_arrays_are_read_in_place():
    X, y = make_sparse(20, 10, 1, "mse", "float64")
    net = cr.Network([10, 1], output="identity", loss="mse", seed=0)
    before = net.predict(X)
    X.data *= 2.0  # the same arrays, new values: seen by the next call
    assert not np.array_equal(net.predict(X), before)
    assert_close(net.predict(X), net.predict(X.toarray()), "float64")


def bad_inputs():
    X = sparse.csr_matrix(np.array([[0.0, 1.0, 0.0], [2.0, 0.0, 3.0]]))

    def with_(**arrays):
        Y = X.copy()
        for name, value in arrays.items():
            setattr(Y, name, value)
        return Y

    return [
        ("wrong dtype", X.astype(np.float32), TypeError, "X.data has dtype float32"),
        ("wrong width", sparse.csr_matrix((2, 4)), ValueError, "features per record"),
        ("index out of range", with_(indices=np.array([1, 0, 3], dtype=np.int32)), ValueError, "out of range"),
        ("negative index", with_(indices=np.array([1, -1, 2], dtype=np.int32)), ValueError, "out of range"),
        ("decreasing indptr", with_(indptr=np.array([0, 2, 1], dtype=np.int32)), ValueError, "non-decreasing"),
        ("indptr past the data", with_(indptr=np.array([0, 1, 4], dtype=np.int32)), ValueError, "exceeds"),
        ("nan", with_(data=np.array([1.0, np.nan, 3.0])), ValueError, "non-finite value (nan or inf) at record 1"),
        ("mixed index types", with_(indices=X.indices.astype(np.int64)), TypeError, "int32 or both int64"),
        ("float indices", with_(indices=X.indices.astype(np.float64)), TypeError, "int32 or both int64"),
        ("no records", sparse.csr_matrix((0, 3)), ValueError, "X is empty"),
    ]


@pytest.mark.parametrize("name, X, error, words", bad_inputs(), ids=[case[0] for case in bad_inputs()])
def test_bad_sparse_input_is_refused_with_the_model_unchanged(name, X, error, words):
    net = cr.Network([3, 2, 1], "tanh", "sigmoid", "bce", seed=0)
    before = net._core.params().copy()
    y = np.ones((X.shape[0], 1))
    opt = optim.Adam(lr=0.1)
    for call in (lambda: net.fit(X, y, epochs=2, optimizer=opt), lambda: net.predict(X),
                 lambda: net.cost(X, y), lambda: net.gradients(X, y)):
        with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
            call()
    assert np.array_equal(net._core.params(), before)
    assert opt._state is None or opt._state.steps == 0


def test_sgd_step_refuses_sparse_x():
    net = cr.Network([3, 1], seed=0)
    with pytest.raises(TypeError, match="sgd_step takes dense X"):
        net.sgd_step(sparse.csr_matrix(np.eye(3)), np.ones((3, 1)), 0.1)


def test_a_wide_sparse_fit_allocates_nothing_the_size_of_dense_batches():
    # 2,000,000 features: a dense X of 1,000 records would take 16 GB, a
    # dense batch of 200 records 3.2 GB. The network (with its gradients and
    # Adam's two buffers) takes 4 x 32 MB; the CSR fit and predict, run in a
    # process of their own, must peak far below one dense batch. The peak is
    # the process's own (Linux's VmHWM): its ru_maxrss would also count the
    # pytest process it was spawned from, whose peak depends on the tests
    # run before this one.
    script = textwrap.dedent("""
        import os
        import resource
        import numpy as np
        import scipy.sparse as sparse
        import chainrule as cr
        from chainrule import optim
        rng = np.random.default_rng(0)
        indptr = np.arange(0, 2001, 2, dtype=np.int32)  # two entries per record
        X = sparse.csr_matrix((rng.standard_normal(2000), rng.integers(0, 2_000_000, 2000, dtype=np.int32),
                               indptr), shape=(1000, 2_000_000))
        y = (np.arange(1000) % 2).reshape(-1, 1).astype(np.float64)
        net = cr.Network([2_000_000, 2, 1], "relu", "sigmoid", "bce", seed=0)
        costs = net.fit(X, y, epochs=2, batch_size=200, seed=0, optimizer=optim.Adam(lr=1e-3))
        assert np.all(np.isfinite(costs)) and net.predict(X).shape == (1000, 1)
        if os.path.exists("/proc/self/status"):
            with open("/proc/self/status") as status:
                print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) // 1024)
        else:
            print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    peak_mib = int(result.stdout.split()[-1])
    assert peak_mib < 1024, f"peak {peak_mib} MiB"
