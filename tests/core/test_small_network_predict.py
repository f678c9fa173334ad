"""predict's fast path for one small hidden layer and one output (W2, W3; docs/math.md,
"Forward pass", predict through a small network): its values against the NumPy reference, the same
bits for any thread count and however the records are split into calls, and the plain
path's errors for a non-finite input (wherever it is, also where the sigmoid would hide
it) and for an output that overflows. The C++ test test_small_linear checks its bits
against the plain path's kernels."""

import numpy as np
import pytest

import chainrule as cr
import reference

# (sizes, hidden activation, output activation): W2, W3, and other shapes it takes
# (in float64, W3's 32 hidden units are more than it takes: the plain path's).
NETWORKS = [([30, 16, 1], "sigmoid", "sigmoid"), ([10, 32, 1], "sigmoid", "identity"),
            ([5, 8, 1], "identity", "sigmoid"), ([64, 24, 1], "identity", "identity")]
DTYPES = ["float32", "float64"]


def network(sizes, hidden, output, dtype):
    return cr.Network(sizes, activation=hidden, output=output, loss="mse", dtype=dtype, seed=7)


def records(n, width, dtype, seed=0):
    return (np.random.default_rng(seed).standard_normal((n, width)) * 4).astype(dtype)


def params_of(net):
    return [(w.copy(), b.copy()) for w, b in zip(net.weights, net.biases)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,hidden,output", NETWORKS)
def test_small_network_predict_matches_the_reference(sizes, hidden, output, dtype):
    net = network(sizes, hidden, output, dtype)
    X = records(1000, sizes[0], dtype)
    expected = reference.predict(params_of(net), [hidden, output], X)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(net.predict(X), expected, rtol=tol, atol=tol * (1 + np.abs(expected).max()))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,hidden,output", NETWORKS)
def test_small_network_predict_has_the_same_bits_on_any_thread_count_and_split(sizes, hidden, output, dtype,
                                                                             at_each_thread_count):
    net = network(sizes, hidden, output, dtype)
    X = records(5000, sizes[0], dtype, seed=1)
    runs = at_each_thread_count(lambda: net.predict(X))
    for run in runs[1:]:
        assert run.tobytes() == runs[0].tobytes()
    # Calls that the fast path takes whole (each chunk of 256 records or the
    # last one at least 4096 multiply-adds of the hidden layer: 103 records of
    # the 5-8-1 network), ending anywhere in its blocks of records.
    starts = [0, 110, 256, 371, 1111, 4096, 5000]
    parts = np.concatenate([net.predict(X[a:b]) for a, b in zip(starts, starts[1:])])
    assert parts.tobytes() == runs[0].tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [(0, 0), (5, 29), (300, 3), (2999, 10), (3071, 0), (3075, 17)])
def test_small_network_predict_names_the_first_non_finite_input(dtype, value, where, at_each_thread_count):
    # 3077 records: chunks of 256, the last one of 5, too few for the fast
    # path (the plain one's). An inf in a sigmoid network can give finite
    # outputs, so only the check of X finds it.
    net = network([30, 16, 1], "sigmoid", "sigmoid", dtype)
    X = records(3077, 30, dtype, seed=2)
    X[where] = value
    X[where[0] + 1:, 7] = np.nan  # later ones are not the one named
    message = f"X contains a non-finite value (nan or inf) at record {where[0]}, feature {where[1]}"
    for raised in at_each_thread_count(lambda: value_error_of(net, X)):
        assert message in raised
    # A call too small for the fast path (under 9 records) says the same.
    X_small = X[where[0]:where[0] + 3].copy()
    with pytest.raises(ValueError, match=rf"at record 0, feature {where[1]}"):
        net.predict(X_small)


def value_error_of(net, X):
    with pytest.raises(ValueError) as raised:
        net.predict(X)
    return str(raised.value)


@pytest.mark.parametrize("dtype", DTYPES)
def test_small_network_predict_overflow_is_a_divergence_error(dtype):
    net = network([10, 8, 1], "identity", "identity", dtype)
    for w in net.weights:
        w[...] = 1
    X = np.ones((40, 10), dtype=dtype)
    X[17] = np.finfo(dtype).max / 4  # finite, but 10 of them sum past the largest value
    with pytest.raises(cr.DivergenceError, match="predict overflowed: output 0 of record 17 is inf"):
        net.predict(X)
    # A non-finite input later on is still the error named.
    X[30, 2] = np.nan
    with pytest.raises(ValueError, match="at record 30, feature 2"):
        net.predict(X)


@pytest.mark.parametrize("dtype", DTYPES)
def test_small_network_predict_checks_x_before_the_parameters(dtype):
    net = network([30, 16, 1], "sigmoid", "sigmoid", dtype)
    X = records(100, 30, dtype)
    net.weights[1][0, 3] = np.nan
    with pytest.raises(ValueError) as parameter_error:
        net.predict(X)
    assert "X contains" not in str(parameter_error.value)
    X[50, 4] = np.inf
    with pytest.raises(ValueError, match="X contains a non-finite value .* at record 50, feature 4"):
        net.predict(X)
