"""net.gradients(X, Y) against central differences of net.cost(X, Y).

Every activation x loss x dtype, from the seeds' logistic regression (one
layer) to four layers. Each parameter is nudged in place through the writable
views net.weights / net.biases (they share memory with the C++ network), the
cost is read on both sides, and the exact original value is written back.
"""

import numpy as np
import pytest

import chainrule as cr
import reference

ACTIVATIONS = [name for name in cr.ACTIVATIONS if name != "softmax"]  # every elementwise activation
KINKED = ("relu", "leaky_relu")  # not differentiable at z = 0

# Step and tolerance per dtype. The central difference has truncation error
# ~h^2 C''' / 6 and rounding error ~eps |C| / h.
#  float64: eps = 2.2e-16, h = 1e-5 -> both terms ~1e-10 relative; 1e-6 leaves room.
#  float32: eps = 1.2e-7 and the cost itself is computed in float32, so the
#   best h ~ eps^(1/3) ~ 5e-3 still leaves ~1e-4..1e-3 relative error on each
#   difference; 2e-2 sits above that noise yet well below any real slip (a
#   dropped factor 2 is a 50% error, a wrong f' or a transposed W far more).
STEP = {"float64": 1e-5, "float32": 5e-3}
TOLERANCE = {"float64": 1e-6, "float32": 2e-2}

# Records a relu pre-activation must keep between itself and the kink at 0.
# Nudging one parameter by h moves a pre-activation by about h * |input| (times
# the weights on the way down for deeper layers); these margins are ~20x that,
# and check_relu_pattern below proves no record crosses the kink anyway.
RELU_MARGIN = {"float64": 1e-3, "float32": 0.1}


def _network(layer_sizes, activation, loss, dtype, seed):
    """BCE needs a sigmoid output: the activation under test goes to the hidden
    layers. MSE takes it in the output layer too."""
    output = "sigmoid" if loss == "bce" else activation
    return cr.Network(layer_sizes, activation=activation, output=output, loss=loss, dtype=dtype, seed=seed)


def _relu_pre_activations(params, activations, X):
    """The pre-activations Z_l of the relu layers, stacked per record (B, sum n_l)."""
    Zs, _ = reference.forward(params, activations, X)
    relu = [Z for Z, name in zip(Zs, activations) if name in KINKED]
    return np.hstack(relu) if relu else np.zeros((X.shape[0], 0))


def _keep_away_from_relu_kinks(net, copy_params, X, Y, margin, num_records):
    """The first num_records records whose relu pre-activations all satisfy |z| > margin.

    At a kink the cost is not differentiable and a central difference straddling
    it measures the mean of the two one-sided slopes, not f'. Dropping records
    near a kink (rather than loosening the tolerance) keeps the check exact.
    """
    Z = _relu_pre_activations(copy_params(net), net.activations, X)
    keep = np.all(np.abs(Z) > margin, axis=1)
    assert keep.sum() >= num_records, f"only {keep.sum()} records clear of the relu kinks"
    index = np.flatnonzero(keep)[:num_records]
    return np.ascontiguousarray(X[index]), np.ascontiguousarray(Y[index])


def _central_differences(net, X, Y, step, on_each_nudge=None):
    """[(dW_1, db_1), ...] estimated as (C(p + h) - C(p - h)) / (p_+ - p_-) for every parameter p."""
    estimate = []
    for weight, bias in zip(net.weights, net.biases):
        pair = []
        for view in (weight, bias):
            flat = view.reshape(-1)  # a view of the network's memory (C-contiguous)
            assert np.shares_memory(flat, view)
            d_view = np.zeros(flat.shape, dtype=np.float64)
            for i in range(flat.size):
                original = flat[i]
                flat[i] = original + view.dtype.type(step)
                plus_value, cost_plus = flat[i], net.cost(X, Y)
                if on_each_nudge:
                    on_each_nudge()
                flat[i] = original - view.dtype.type(step)
                minus_value, cost_minus = flat[i], net.cost(X, Y)
                if on_each_nudge:
                    on_each_nudge()
                flat[i] = original  # the exact value back, not original + h - h
                # Divide by the step the dtype actually took (p+h rounds in float32).
                d_view[i] = (cost_plus - cost_minus) / (float(plus_value) - float(minus_value))
            pair.append(d_view.reshape(view.shape))
        estimate.append(tuple(pair))
    return estimate


def _check(net, copy_params, X, Y):
    dtype = net.dtype.name
    before = copy_params(net)
    analytic = net.gradients(X, Y)

    relu_pattern = _relu_pre_activations(before, net.activations, X) > 0

    def check_relu_pattern():
        pattern = _relu_pre_activations(copy_params(net), net.activations, X) > 0
        assert np.array_equal(pattern, relu_pattern), "a nudge crossed a relu kink"

    numeric = _central_differences(net, X, Y, STEP[dtype],
                                   check_relu_pattern if set(KINKED) & set(net.activations) else None)

    for (W, b), (W0, b0) in zip(copy_params(net), before):  # every nudge was undone exactly
        assert np.array_equal(W, W0) and np.array_equal(b, b0)

    assert len(analytic) == len(numeric) == len(net.layer_sizes) - 1
    for layer, ((dW, db), (dW_num, db_num)) in enumerate(zip(analytic, numeric), start=1):
        assert dW.dtype == db.dtype == net.dtype
        assert dW.shape == dW_num.shape and db.shape == db_num.shape
        for name, got, expected in (("dW", dW, dW_num), ("db", db, db_num)):
            # Guard: an all-zero gradient would pass a difference check trivially
            # if the cost did not depend on this parameter either.
            assert np.any(expected != 0), f"{name}_{layer}: central difference is all zero"
            assert np.any(got != 0), f"{name}_{layer}: gradient is all zero"
            error = reference.relative_error(got, expected)
            assert error < TOLERANCE[dtype], f"{name}_{layer}: relative error {error:.3g}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("num_features", [2, 5], ids=["2_features", "5_features"])
def test_logistic_regression(make_data, copy_params, dtype, num_features):
    """The seeds' model: one sigmoid unit, BCE (dw = (a - y) x, db = a - y, averaged)."""
    net = cr.Network([num_features, 1], output="sigmoid", loss="bce", dtype=dtype, seed=11)
    X, Y = make_data(16, num_features, 1, "bce", dtype=dtype, seed=12)
    _check(net, copy_params, X, Y)


ARCHITECTURES = {
    "depth1": [4, 3],
    "depth2": [4, 6, 3],
    "depth4": [5, 7, 6, 4, 3],
}

CASES = [
    pytest.param(sizes, activation, loss, dtype, id=f"{name}-{activation}-{loss}-{dtype}")
    for dtype in ["float64", "float32"]
    for loss in ["bce", "mse"]
    for activation in ACTIVATIONS
    for name, sizes in ARCHITECTURES.items()
    # depth 1 with BCE has no hidden layer: only the sigmoid output, tested once.
    if not (loss == "bce" and name == "depth1" and activation != "sigmoid")
]


def _records_to_check(net, copy_params, X, Y, dtype, num_records=10):
    """num_records records of (X, Y): with relu, ones whose pre-activations keep clear of the kink."""
    if set(KINKED) & set(net.activations):
        return _keep_away_from_relu_kinks(net, copy_params, X, Y, RELU_MARGIN[dtype], num_records)
    return X[:num_records].copy(), Y[:num_records].copy()


@pytest.mark.parametrize("layer_sizes, activation, loss, dtype", CASES)
def test_gradients_match_central_differences(make_data, copy_params, layer_sizes, activation, loss, dtype):
    net = _network(layer_sizes, activation, loss, dtype, seed=3)
    X, Y = make_data(200, layer_sizes[0], layer_sizes[-1], loss, dtype=dtype, seed=4)
    _check(net, copy_params, *_records_to_check(net, copy_params, X, Y, dtype))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_mixed_activations_and_soft_targets(make_data, copy_params, dtype):
    """One activation per hidden layer, and BCE targets strictly inside (0, 1)."""
    net = cr.Network([4, 6, 5, 3, 2], activation=["tanh", "sigmoid", "identity"], output="sigmoid",
                     loss="bce", dtype=dtype, seed=21)
    X, _ = make_data(12, 4, 2, "bce", dtype=dtype, seed=22)
    Y = np.ascontiguousarray(np.random.default_rng(23).random((12, 2)), dtype=dtype)
    _check(net, copy_params, X, Y)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_single_record_batch(make_data, copy_params, dtype):
    """B = 1: the per-record gradient of the seeds (no averaging)."""
    net = cr.Network([3, 4, 2], activation="tanh", output="identity", loss="mse", dtype=dtype, seed=31)
    X, Y = make_data(1, 3, 2, "mse", dtype=dtype, seed=32)
    _check(net, copy_params, X, Y)


# -- softmax + categorical cross-entropy (chainrule's extension, docs/math.md) --

SOFTMAX_ARCHITECTURES = {
    "depth1": [4, 3],
    "depth2": [4, 6, 3],
    "depth3": [4, 6, 5, 3],
    "depth4": [5, 7, 6, 4, 3],
}

SOFTMAX_CASES = [
    pytest.param(sizes, activation, dtype, id=f"{name}-{activation}-softmax-cce-{dtype}")
    for dtype in ["float64", "float32"]
    for activation in ACTIVATIONS
    for name, sizes in SOFTMAX_ARCHITECTURES.items()
    if not (name == "depth1" and activation != "sigmoid")  # no hidden layer: tested once
]


@pytest.mark.parametrize("layer_sizes, activation, dtype", SOFTMAX_CASES)
def test_softmax_cce_gradients_match_central_differences(make_data, copy_params, layer_sizes, activation, dtype):
    """One-hot targets; the fused delta A - Y against the cost's own differences."""
    net = cr.Network(layer_sizes, activation=activation, output="softmax", loss="cce", dtype=dtype, seed=5)
    X, Y = make_data(200, layer_sizes[0], layer_sizes[-1], "cce", dtype=dtype, seed=6)
    _check(net, copy_params, *_records_to_check(net, copy_params, X, Y, dtype))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_cce_with_soft_labels(make_data, copy_params, dtype):
    """Soft labels (rows of a distribution, not one-hot) take the same fused delta."""
    net = cr.Network([4, 6, 3], activation="tanh", output="softmax", loss="cce", dtype=dtype, seed=7)
    X, _ = make_data(12, 4, 3, "cce", dtype=dtype, seed=8)
    P = np.random.default_rng(9).random((12, 3)) + 0.05
    Y = np.ascontiguousarray(P / P.sum(axis=1, keepdims=True), dtype=dtype)
    _check(net, copy_params, X, Y)
