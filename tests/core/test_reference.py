"""chainrule against tests/reference.py, the plain-NumPy reading of docs/math.md.

In float64 the two may differ only by the order of floating-point sums, so
predictions, costs, gradients and three epochs of in-order SGD agree to a
relative error of 1e-10. A float32 network is held to its own precision
against the float64 reference run from the same (float32) parameters.
"""

import numpy as np
import pytest

import chainrule as cr
import reference

FLOAT64_TOLERANCE = 1e-10

# (layer_sizes, hidden activation(s), output, loss); ids name what each covers.
MODELS = {
    "logistic-regression": ([3, 1], "sigmoid", "sigmoid", "bce"),
    # one-layer networks: their one-record steps take the fused kernel (dense_record_steps);
    # 9 and 17 inputs reach its vector tail
    "linear-regression": ([4, 1], "identity", "identity", "mse"),
    "one-layer-multi-output-bce": ([9, 3], "sigmoid", "sigmoid", "bce"),
    "one-layer-tanh-mse": ([8, 2], "identity", "tanh", "mse"),
    "one-layer-relu-mse": ([17, 2], "identity", "relu", "mse"),
    "tanh-sigmoid-bce": ([4, 6, 2], "tanh", "sigmoid", "bce"),
    "relu-relu-sigmoid-bce": ([5, 8, 6, 3], "relu", "sigmoid", "bce"),
    "sigmoid-identity-mse": ([3, 5, 1], "sigmoid", "identity", "mse"),  # seed 003's network
    "identity-sigmoid-mse": ([4, 5, 3, 2], "identity", "sigmoid", "mse"),  # MSE + other f
    "relu-tanh-mse": ([3, 8, 1], "relu", "tanh", "mse"),
    "relu-relu-relu-relu-mse": ([5, 7, 6, 4, 3], "relu", "relu", "mse"),
    "mixed-identity-mse": ([5, 6, 5, 4, 2], ["tanh", "relu", "sigmoid"], "identity", "mse"),
    # softmax + CCE, chainrule's extension (docs/math.md), depth 1 to 4
    "softmax-regression-cce": ([3, 4], "sigmoid", "softmax", "cce"),
    "tanh-softmax-cce": ([4, 6, 3], "tanh", "softmax", "cce"),
    "relu-sigmoid-softmax-cce": ([5, 8, 6, 3], ["relu", "sigmoid"], "softmax", "cce"),
    "relu-relu-relu-softmax-cce": ([5, 7, 6, 4, 3], "relu", "softmax", "cce"),
}
MODEL_PARAMS = [pytest.param(*model, id=name) for name, model in MODELS.items()]


def _network(layer_sizes, activation, output, loss, dtype="float64", seed=7):
    return cr.Network(layer_sizes, activation=activation, output=output, loss=loss, dtype=dtype, seed=seed)


def _assert_close(got, expected, tolerance, what):
    error = reference.relative_error(got, expected)
    assert error < tolerance, f"{what}: relative error {error:.3g} (tolerance {tolerance:g})"


def _assert_params_close(net, expected_params, tolerance):
    for layer, (W, b, (W_ref, b_ref)) in enumerate(zip(net.weights, net.biases, expected_params), start=1):
        _assert_close(W, W_ref, tolerance, f"W_{layer}")
        _assert_close(b, b_ref, tolerance, f"b_{layer}")


# -- the reference itself ---------------------------------------------------


@pytest.mark.parametrize("layer_sizes, activation, output, loss", MODEL_PARAMS)
def test_reference_gradients_match_its_own_central_differences(make_data, copy_params, layer_sizes, activation,
                                                               output, loss):
    """The reference is only worth agreeing with if its backward pass is the
    gradient of its cost. With h = 1e-6 a relu kink matters only for a
    pre-activation within ~1e-6 of 0; were the seeded data to hold one, the
    check would fail loudly, not pass wrongly."""
    net = _network(layer_sizes, activation, output, loss)
    params, activations = copy_params(net), net.activations
    X, Y = make_data(6, layer_sizes[0], layer_sizes[-1], loss, seed=1)
    analytic = reference.gradients(params, activations, loss, X, Y)
    step = 1e-6
    for (W, b), (dW, db) in zip(params, analytic):
        for array, d_array in ((W, dW), (b, db)):
            numeric = np.zeros_like(array)
            for index in np.ndindex(array.shape):
                original = array[index]
                array[index] = original + step
                cost_plus = reference.cost(params, activations, loss, X, Y)
                array[index] = original - step
                cost_minus = reference.cost(params, activations, loss, X, Y)
                array[index] = original
                numeric[index] = (cost_plus - cost_minus) / (2 * step)
            _assert_close(d_array, numeric, 1e-6, "reference gradient")


def test_reference_sigmoid_is_stable():
    z = np.array([-1000.0, -745.2, -40.0, 0.0, 40.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is the right answer
        a = reference.sigmoid(z)
    assert a[0] == 0.0 and a[-1] == 1.0 and a[3] == 0.5
    assert np.all(np.isfinite(a)) and np.all(np.diff(a) >= 0)


# -- float64: agreement to 1e-10 ----------------------------------------------


@pytest.mark.parametrize("layer_sizes, activation, output, loss", MODEL_PARAMS)
def test_predict_cost_and_gradients(make_data, copy_params, layer_sizes, activation, output, loss):
    net = _network(layer_sizes, activation, output, loss)
    params, activations = copy_params(net), net.activations
    X, Y = make_data(23, layer_sizes[0], layer_sizes[-1], loss, seed=2)

    predictions = net.predict(X)
    assert predictions.shape == (23, layer_sizes[-1]) and predictions.dtype == np.float64
    _assert_close(predictions, reference.predict(params, activations, X), FLOAT64_TOLERANCE, "predict")

    _assert_close(net.cost(X, Y), reference.cost(params, activations, loss, X, Y), FLOAT64_TOLERANCE, "cost")

    expected = reference.gradients(params, activations, loss, X, Y)
    got = net.gradients(X, Y)
    assert len(got) == len(expected)
    for layer, ((dW, db), (dW_ref, db_ref)) in enumerate(zip(got, expected), start=1):
        _assert_close(dW, dW_ref, FLOAT64_TOLERANCE, f"dW_{layer}")
        _assert_close(db, db_ref, FLOAT64_TOLERANCE, f"db_{layer}")
    for (W, b), (W0, b0) in zip(copy_params(net), params):  # reading gradients leaves the parameters alone
        assert np.array_equal(W, W0) and np.array_equal(b, b0)


@pytest.mark.parametrize("layer_sizes, activation, output, loss", MODEL_PARAMS)
def test_sgd_step(make_data, copy_params, layer_sizes, activation, output, loss):
    net = _network(layer_sizes, activation, output, loss)
    X, Y = make_data(9, layer_sizes[0], layer_sizes[-1], loss, seed=3)
    expected_params, expected_cost = reference.sgd_step(copy_params(net), net.activations, loss, X, Y, lr=0.3)
    _assert_close(net.sgd_step(X, Y, 0.3), expected_cost, FLOAT64_TOLERANCE, "cost before the step")
    _assert_params_close(net, expected_params, FLOAT64_TOLERANCE)


# 29 records: batch_size 8 leaves a last batch of 5; 1 is the seeds' per-record
# SGD; 29 is one full batch per epoch.
@pytest.mark.parametrize("batch_size", [8, 1, 29], ids=["batch8-last5", "batch1", "full-batch"])
@pytest.mark.parametrize("layer_sizes, activation, output, loss", MODEL_PARAMS)
def test_three_epochs_in_order(make_data, copy_params, layer_sizes, activation, output, loss, batch_size):
    net = _network(layer_sizes, activation, output, loss)
    X, Y = make_data(29, layer_sizes[0], layer_sizes[-1], loss, seed=4)
    lr = 0.05
    expected_params, expected_costs = reference.fit(copy_params(net), net.activations, loss, X, Y, epochs=3,
                                                    lr=lr, batch_size=batch_size)
    costs = net.fit(X, Y, epochs=3, lr=lr, batch_size=batch_size, shuffle=False)
    assert costs.shape == (3,)
    _assert_close(costs, expected_costs, FLOAT64_TOLERANCE, "per-epoch costs")
    _assert_params_close(net, expected_params, FLOAT64_TOLERANCE)


def test_epoch_cost_weights_batches_by_size(make_data, copy_params):
    """The epoch cost is the record mean, not the mean of batch costs: with 7
    records in batches of 5 and 2 the two differ, and only the first is right."""
    net = _network([2, 3, 1], "tanh", "identity", "mse")
    X, Y = make_data(7, 2, 1, "mse", seed=5)
    params, activations = copy_params(net), net.activations
    first_params, first_cost = reference.sgd_step(params, activations, "mse", X[:5], Y[:5], lr=0.1)
    _, second_cost = reference.sgd_step(first_params, activations, "mse", X[5:], Y[5:], lr=0.1)
    record_mean = (5 * first_cost + 2 * second_cost) / 7
    batch_mean = (first_cost + second_cost) / 2
    assert abs(record_mean - batch_mean) > 1e-3 * abs(record_mean)  # the data tells them apart
    (cost,) = net.fit(X, Y, epochs=1, lr=0.1, batch_size=5, shuffle=False)
    _assert_close(cost, record_mean, FLOAT64_TOLERANCE, "epoch cost")


def test_saturated_sigmoid_and_bce_stay_finite(copy_params):
    """Logits of +-800: the sigmoid rounds to exactly 0 and 1 and BCE, taken
    from the logits, is the finite ~800 the reference gives (not log(0))."""
    net = _network([1, 1], "sigmoid", "sigmoid", "bce")
    net.weights[0][:] = 1.0
    net.biases[0][:] = 0.0
    X = np.array([[-800.0], [800.0], [0.0]])
    Y = np.array([[1.0], [0.0], [1.0]])
    predictions = net.predict(X)
    assert predictions[0, 0] == 0.0 and predictions[1, 0] == 1.0 and predictions[2, 0] == 0.5
    expected = reference.cost(copy_params(net), net.activations, "bce", X, Y)  # (800 + 800 + log 2) / 3
    _assert_close(net.cost(X, Y), expected, FLOAT64_TOLERANCE, "cost")
    for (dW, db), (dW_ref, db_ref) in zip(net.gradients(X, Y),
                                          reference.gradients(copy_params(net), net.activations, "bce", X, Y)):
        _assert_close(dW, dW_ref, FLOAT64_TOLERANCE, "dW")
        _assert_close(db, db_ref, FLOAT64_TOLERANCE, "db")


# -- float32 against the float64 reference ------------------------------------

# float32 rounds each operation to 2^-24 ~ 6e-8 relative. A prediction or cost
# is a few dozen such operations deep, a gradient (with its cancellations) and
# three epochs of SGD a few hundred; 1e-5 and 1e-4 bound that with room, while
# any error in the math itself is orders of magnitude larger.
FLOAT32_TOLERANCE = {"forward": 1e-5, "backward": 1e-4}


@pytest.mark.parametrize("layer_sizes, activation, output, loss", MODEL_PARAMS)
def test_float32_network_agrees_with_float64_reference(make_data, copy_params, layer_sizes, activation, output,
                                                       loss):
    net = _network(layer_sizes, activation, output, loss, dtype="float32")
    assert net.weights[0].dtype == np.float32
    X, Y = make_data(23, layer_sizes[0], layer_sizes[-1], loss, dtype="float32", seed=6)
    params, activations = copy_params(net), net.activations  # float32 values, exactly as the network holds them

    predictions = net.predict(X)
    assert predictions.dtype == np.float32
    _assert_close(predictions, reference.predict(params, activations, X), FLOAT32_TOLERANCE["forward"], "predict")
    _assert_close(net.cost(X, Y), reference.cost(params, activations, loss, X, Y), FLOAT32_TOLERANCE["forward"],
                  "cost")
    for layer, ((dW, db), (dW_ref, db_ref)) in enumerate(
            zip(net.gradients(X, Y), reference.gradients(params, activations, loss, X, Y)), start=1):
        assert dW.dtype == db.dtype == np.float32
        _assert_close(dW, dW_ref, FLOAT32_TOLERANCE["backward"], f"dW_{layer}")
        _assert_close(db, db_ref, FLOAT32_TOLERANCE["backward"], f"db_{layer}")

    expected_params, expected_costs = reference.fit(params, activations, loss, X, Y, epochs=3, lr=0.05,
                                                    batch_size=8)
    costs = net.fit(X, Y, epochs=3, lr=0.05, batch_size=8, shuffle=False)
    _assert_close(costs, expected_costs, FLOAT32_TOLERANCE["backward"], "per-epoch costs")
    _assert_params_close(net, expected_params, FLOAT32_TOLERANCE["backward"])


# -- 1-D y where there is one output --------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss, output", [("bce", "sigmoid"), ("mse", "identity")], ids=["bce", "mse"])
def test_one_dimensional_y_is_the_same_as_a_column(make_data, copy_params, loss, output, dtype):
    """A 1-D y of length B is accepted where n_L == 1 and means y[:, None]."""
    column_net = _network([3, 4, 1], "tanh", output, loss, dtype=dtype)
    flat_net = column_net.copy()
    X, Y = make_data(13, 3, 1, loss, dtype=dtype, seed=8)
    y = np.ascontiguousarray(Y[:, 0])
    assert y.ndim == 1

    assert flat_net.cost(X, y) == column_net.cost(X, Y)
    for (dW, db), (dW_col, db_col) in zip(flat_net.gradients(X, y), column_net.gradients(X, Y)):
        assert np.array_equal(dW, dW_col) and np.array_equal(db, db_col)
    assert flat_net.sgd_step(X, y, 0.1) == column_net.sgd_step(X, Y, 0.1)
    flat_costs = flat_net.fit(X, y, epochs=3, lr=0.1, batch_size=4, shuffle=False)
    column_costs = column_net.fit(X, Y, epochs=3, lr=0.1, batch_size=4, shuffle=False)
    assert np.array_equal(flat_costs, column_costs)
    for W_flat, W_col in zip(flat_net.weights + flat_net.biases, column_net.weights + column_net.biases):
        assert np.array_equal(W_flat, W_col)

    if dtype == "float64":  # and both are the reference's answer
        start = copy_params(_network([3, 4, 1], "tanh", output, loss))
        _, expected_costs = reference.fit(start, flat_net.activations, loss, X, y, epochs=1, lr=0.1, batch_size=4)
        fresh = _network([3, 4, 1], "tanh", output, loss)
        _assert_close(fresh.fit(X, y, epochs=1, lr=0.1, batch_size=4, shuffle=False), expected_costs,
                      FLOAT64_TOLERANCE, "per-epoch costs")


def test_saturated_softmax_and_cce_stay_finite(copy_params):
    """Logits 1000 apart: the target's probability rounds to exactly 0, and the
    CCE, taken from the logits by log-sum-exp, is the finite gap the reference gives."""
    net = _network([1, 3], "sigmoid", "softmax", "cce")
    net.weights[0][:] = np.array([[1000.0], [0.0], [-1000.0]])
    net.biases[0][:] = 0.0
    X = np.array([[1.0], [-1.0]])
    Y = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        expected = reference.cost(copy_params(net), net.activations, "cce", X, Y)
    predictions = net.predict(X)
    assert predictions[0, 0] == 1.0 and predictions[0, 2] == 0.0 and np.all(np.isfinite(predictions))
    assert np.isfinite(net.cost(X, Y))
    _assert_close(net.cost(X, Y), expected, FLOAT64_TOLERANCE, "cost")  # (2000 + 2000) / 2
    for (dW, db), (dW_ref, db_ref) in zip(net.gradients(X, Y),
                                          reference.gradients(copy_params(net), net.activations, "cce", X, Y)):
        _assert_close(dW, dW_ref, FLOAT64_TOLERANCE, "dW")
        _assert_close(db, db_ref, FLOAT64_TOLERANCE, "db")
