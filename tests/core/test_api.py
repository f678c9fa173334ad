"""The Python face of chainrule.Network: construction, properties, repr,
zero-copy parameter views, activation lists, dtypes, copy and pickle.

Every check is a property of the public API (python/chainrule/network.py);
the numbers are computed here, never copied from a run.
"""

import copy
import gc
import pickle

import numpy as np
import pytest

import chainrule as cr
import reference

DTYPES = ["float32", "float64"]
ACTIVATIONS = [name for name in cr.ACTIVATIONS if name != "softmax"]  # every elementwise activation

# Architectures as (layer_sizes, hidden activation(s), output, loss).
ARCHITECTURES = {
    "logistic-regression": ([4, 1], "sigmoid", "sigmoid", "bce"),
    "one-hidden-tanh": ([3, 5, 2], "tanh", "sigmoid", "bce"),
    "mixed-list-mse": ([3, 6, 4, 2], ["relu", "tanh"], "identity", "mse"),
    "deep-relu-mse": ([2, 4, 4, 4, 3], "relu", "tanh", "mse"),
}


def make_network(name, dtype="float64", seed=0):
    sizes, activation, output, loss = ARCHITECTURES[name]
    return cr.Network(sizes, activation=activation, output=output, loss=loss, dtype=dtype, seed=seed)


def make_data(net, num_records=7, seed=1):
    """Seeded X (standard normal) and y (0/1 for bce, normal for mse) of the network's dtype."""
    rng = np.random.default_rng(seed)
    num_inputs, num_outputs = net.layer_sizes[0], net.layer_sizes[-1]
    X = rng.standard_normal((num_records, num_inputs))
    if net.loss == "bce":
        y = (rng.random((num_records, num_outputs)) < 0.5).astype(np.float64)
    else:
        y = rng.standard_normal((num_records, num_outputs))
    return np.ascontiguousarray(X, dtype=net.dtype), np.ascontiguousarray(y, dtype=net.dtype)


def parameters(net):
    """Copies of W_1, b_1, ..., W_L, b_L."""
    return [a.copy() for pair in zip(net.weights, net.biases) for a in pair]


def assert_bitwise_equal(arrays, others):
    assert len(arrays) == len(others)
    for a, b in zip(arrays, others):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


def numpy_forward(net, X):
    """A_L by docs/math.md's forward pass, Z_l = A_{l-1} W_l^T + b_l, in float64 NumPy."""
    a = X.astype(np.float64)
    for W, b, name in zip(net.weights, net.biases, net.activations):
        a = reference.ACTIVATIONS[name](a @ W.astype(np.float64).T + b.astype(np.float64))
    return a


def tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if np.dtype(dtype) == np.float32 else {"rtol": 1e-12, "atol": 1e-13}


# -- construction and properties --------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_properties_describe_the_architecture(name, dtype):
    sizes, activation, output, loss = ARCHITECTURES[name]
    net = make_network(name, dtype)
    num_layers = len(sizes) - 1
    hidden = [activation] * (num_layers - 1) if isinstance(activation, str) else list(activation)

    assert net.layer_sizes == tuple(sizes)
    assert net.activations == tuple(hidden + [output])
    assert net.loss == loss
    assert net.dtype == np.dtype(dtype)
    assert net.n_params == sum(sizes[l + 1] * (sizes[l] + 1) for l in range(num_layers))
    assert len(net.weights) == len(net.biases) == num_layers
    for l in range(num_layers):
        assert net.weights[l].shape == (sizes[l + 1], sizes[l])  # W_l is (n_l, n_{l-1})
        assert net.biases[l].shape == (sizes[l + 1],)
        assert net.weights[l].dtype == net.biases[l].dtype == np.dtype(dtype)
    assert sum(w.size + b.size for w, b in zip(net.weights, net.biases)) == net.n_params


@pytest.mark.parametrize(
    "spelling, expected",
    [
        ("float32", np.float32), (np.float32, np.float32), (np.dtype("float32"), np.float32), ("f4", np.float32),
        ("float64", np.float64), (np.float64, np.float64), (np.dtype("float64"), np.float64), ("f8", np.float64),
    ],
    ids=["str-32", "type-32", "dtype-32", "code-32", "str-64", "type-64", "dtype-64", "code-64"],
)
def test_dtype_accepts_numpy_spellings(spelling, expected):
    net = cr.Network([2, 3, 1], dtype=spelling, seed=0)
    assert net.dtype == np.dtype(expected)
    assert all(w.dtype == np.dtype(expected) for w in net.weights + net.biases)


def test_default_dtype_is_float64():
    assert cr.Network([2, 1], seed=0).dtype == np.float64


@pytest.mark.parametrize("dtype", DTYPES)
def test_initialisation_is_seeded_glorot_uniform_with_zero_biases(dtype):
    sizes, hidden = [5, 8, 6, 6, 3], ["relu", "tanh", "leaky_relu"]
    net = cr.Network(sizes, activation=hidden, output="sigmoid", dtype=dtype, seed=11)
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        fan_in, fan_out = sizes[l], sizes[l + 1]
        # He-uniform for relu layers, Glorot-uniform otherwise (Network's docstring).
        he = net.activations[l] in ("relu", "leaky_relu")
        limit = np.sqrt(6.0 / fan_in) if he else np.sqrt(6.0 / (fan_in + fan_out))
        assert np.all(np.abs(W) <= limit * (1 + 1e-6))
        assert np.unique(W).size == W.size  # really drawn, not a constant
        assert not np.any(b)

    same = cr.Network(sizes, activation=hidden, output="sigmoid", dtype=dtype, seed=11)
    other = cr.Network(sizes, activation=hidden, output="sigmoid", dtype=dtype, seed=12)
    assert_bitwise_equal(parameters(same), parameters(net))
    assert not np.array_equal(other.weights[0], net.weights[0])


def test_float32_and_float64_networks_from_one_seed_start_from_the_same_values():
    net32 = cr.Network([4, 6, 2], activation="tanh", dtype="float32", seed=5)
    net64 = cr.Network([4, 6, 2], activation="tanh", dtype="float64", seed=5)
    for w32, w64 in zip(net32.weights, net64.weights):
        assert np.array_equal(w32, w64.astype(np.float32))


# -- repr and activation lists ------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_repr_shows_the_architecture_and_rebuilds_it(name, dtype):
    net = make_network(name, dtype)
    text = repr(net)
    assert str(list(net.layer_sizes)) in text
    for activation in net.activations:
        assert repr(activation) in text
    assert repr(net.loss) in text and repr(np.dtype(dtype).name) in text

    rebuilt = eval(text, {"Network": cr.Network})  # the repr is a constructor call
    assert rebuilt.layer_sizes == net.layer_sizes
    assert rebuilt.activations == net.activations
    assert rebuilt.loss == net.loss and rebuilt.dtype == net.dtype


@pytest.mark.parametrize(
    "hidden",
    [["relu", "tanh", "identity"], ("sigmoid", "relu", "relu"), ["tanh"] * 3],
    ids=["list", "tuple", "all-same"],
)
def test_activation_list_gives_one_activation_per_hidden_layer(hidden):
    net = cr.Network([3, 5, 4, 6, 2], activation=hidden, output="identity", loss="mse", seed=2)
    assert net.activations == tuple(hidden) + ("identity",)
    X, _ = make_data(net)
    np.testing.assert_allclose(net.predict(X), numpy_forward(net, X), **tolerance(net.dtype))


@pytest.mark.parametrize("hidden", ACTIVATIONS)
def test_activation_string_applies_to_every_hidden_layer(hidden):
    net = cr.Network([3, 4, 4, 1], activation=hidden, output="sigmoid", seed=3)
    assert net.activations == (hidden, hidden, "sigmoid")


def test_activation_list_for_a_network_without_hidden_layers_is_empty():
    net = cr.Network([3, 2], activation=[], output="identity", loss="mse", seed=0)
    assert net.activations == ("identity",)


# -- predict and the parameter layout -------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_predict_follows_z_equals_w_a_plus_b(name, dtype):
    net = make_network(name, dtype)
    for b in net.biases:  # nonzero biases, so that their place in the formula is checked too
        b[...] = np.linspace(-0.5, 0.5, b.size)
    X, _ = make_data(net, num_records=9)
    out = net.predict(X)
    assert out.shape == (9, net.layer_sizes[-1]) and out.dtype == net.dtype
    assert out.flags.c_contiguous and out.flags.owndata
    np.testing.assert_allclose(out, numpy_forward(net, X), **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_output_accepts_1d_targets(dtype):
    net = cr.Network([3, 4, 1], activation="tanh", dtype=dtype, seed=1)
    X, y = make_data(net)
    y1 = y.reshape(-1)
    assert net.cost(X, y1) == net.cost(X, y)
    for (dW1, db1), (dW2, db2) in zip(net.gradients(X, y1), net.gradients(X, y)):
        assert np.array_equal(dW1, dW2) and np.array_equal(db1, db2)


def test_mse_accepts_targets_outside_0_1():
    net = make_network("mixed-list-mse")
    X, _ = make_data(net)
    y = np.full((len(X), 2), 7.5)
    assert np.isfinite(net.cost(X, y))
    net.sgd_step(X, y, 0.01)


# -- inputs are read in place -----------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_inputs_are_read_in_place_and_never_written(dtype):
    net = make_network("one-hidden-tanh", dtype)
    X, y = make_data(net, num_records=12)
    X_bytes, y_bytes = X.tobytes(), y.tobytes()
    X.flags.writeable = False  # reading in place needs no write access
    y.flags.writeable = False
    net.predict(X)
    net.cost(X, y)
    net.gradients(X, y)
    net.sgd_step(X, y, 0.1)
    net.fit(X, y, epochs=2, lr=0.1, batch_size=5, seed=0)  # shuffled batches are gathered, not written back
    assert X.tobytes() == X_bytes and y.tobytes() == y_bytes


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_c_contiguous_row_slice_is_read_in_place(dtype):
    net = make_network("one-hidden-tanh", dtype)
    X, y = make_data(net, num_records=10)
    rows = X[3:8]  # a view, still C-contiguous
    assert rows.flags.c_contiguous and not rows.flags.owndata
    assert np.array_equal(net.predict(rows), net.predict(X)[3:8])
    assert net.cost(rows, y[3:8]) == net.cost(X[3:8].copy(), y[3:8].copy())


# -- parameter views ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_and_bias_views_are_writable_views_of_one_buffer(dtype):
    net = make_network("mixed-list-mse", dtype)
    views = list(net.weights) + list(net.biases)
    for view in views:
        assert view.flags.writeable and view.flags.c_contiguous and view.flags.aligned
        assert not view.flags.owndata
    # Two accesses give the same memory.
    for l in range(len(net.weights)):
        assert np.shares_memory(net.weights[l], net.weights[l])
        first, second = net.weights[l], net.weights[l]
        first[0, 0] = 3.25
        assert second[0, 0] == 3.25
        b_first, b_second = net.biases[l], net.biases[l]
        b_first[-1] = -1.5
        assert b_second[-1] == -1.5
    # Distinct parameters never overlap.
    for i, a in enumerate(views):
        for b in views[i + 1:]:
            assert not np.shares_memory(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_writing_through_the_views_changes_predict(dtype):
    net = make_network("one-hidden-tanh", dtype)
    X, _ = make_data(net)
    before = net.predict(X)
    # Zero output weights: the output is sigmoid(b_L) for every record.
    net.weights[-1][...] = 0
    net.biases[-1][...] = [-2.0, 1.0]
    expected = 1.0 / (1.0 + np.exp(-np.array([-2.0, 1.0])))
    out = net.predict(X)
    assert not np.array_equal(out, before)
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), **tolerance(dtype))
    # One hidden weight changed: predict follows the NumPy forward pass with it.
    net.weights[-1][...] = 0.5
    net.weights[0][2, 1] += 0.75
    np.testing.assert_allclose(net.predict(X), numpy_forward(net, X), **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_views_follow_training(dtype):
    net = make_network("one-hidden-tanh", dtype)
    X, y = make_data(net)
    weight, bias = net.weights[0], net.biases[1]
    weight_before, bias_before = weight.copy(), bias.copy()
    net.fit(X, y, epochs=3, lr=0.5, batch_size=4, seed=0)
    assert not np.array_equal(weight, weight_before)
    assert not np.array_equal(bias, bias_before)
    assert np.array_equal(weight, net.weights[0]) and np.array_equal(bias, net.biases[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_view_outlives_the_network(dtype):
    net = make_network("deep-relu-mse", dtype)
    weight, bias = net.weights[1], net.biases[2]
    weight_values, bias_values = weight.copy(), bias.copy()
    del net
    gc.collect()
    # Churn the allocator: freed memory would be reused here.
    clutter = [np.full((64, 64), 9.0, dtype=dtype) for _ in range(50)]
    others = [make_network("deep-relu-mse", dtype, seed=s) for s in range(20)]
    assert np.array_equal(weight, weight_values) and np.array_equal(bias, bias_values)
    weight[...] = 1.0
    bias[...] = 2.0
    assert np.all(weight == 1.0) and np.all(bias == 2.0)
    assert all(np.all(c == 9.0) for c in clutter) and len(others) == 20


def test_weights_and_biases_cannot_be_rebound():
    net = make_network("one-hidden-tanh")
    with pytest.raises(AttributeError):
        net.weights = ()
    with pytest.raises(AttributeError):
        net.biases = ()


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_are_fresh_arrays_not_views(dtype):
    net = make_network("mixed-list-mse", dtype)
    X, y = make_data(net)
    grads = net.gradients(X, y)
    assert len(grads) == len(net.weights)
    kept = [(dW.copy(), db.copy()) for dW, db in grads]
    for (dW, db), W, b in zip(grads, net.weights, net.biases):
        assert dW.shape == W.shape and db.shape == b.shape and dW.dtype == W.dtype
        assert not np.shares_memory(dW, W) and not np.shares_memory(db, b)
    net.gradients(X * 2, y)  # a later call does not overwrite earlier results
    for (dW, db), (dW0, db0) in zip(grads, kept):
        assert np.array_equal(dW, dW0) and np.array_equal(db, db0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_step_returns_the_cost_before_the_step_and_moves_against_the_gradient(dtype):
    net = make_network("one-hidden-tanh", dtype)
    X, y = make_data(net)
    lr = 0.3
    cost_before = net.cost(X, y)
    grads = net.gradients(X, y)
    params_before = parameters(net)
    returned = net.sgd_step(X, y, lr)
    assert returned == pytest.approx(cost_before, rel=1e-12)
    expected = [p - np.asarray(lr, dtype) * g for p, g in zip(params_before, [a for pair in grads for a in pair])]
    for new, want in zip(parameters(net), expected):
        np.testing.assert_allclose(new, want, **tolerance(dtype))
    assert net.cost(X, y) < cost_before


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_returns_one_cost_per_epoch_and_calls_back(dtype):
    net = make_network("one-hidden-tanh", dtype)
    X, y = make_data(net, num_records=20)
    seen = []
    history = net.fit(X, y, epochs=4, lr=0.5, batch_size=6, seed=3, callback=lambda e, c: seen.append((e, c)))
    assert isinstance(history, np.ndarray) and history.shape == (4,) and history.dtype == np.float64
    assert [e for e, _ in seen] == [0, 1, 2, 3]
    assert np.array_equal([c for _, c in seen], history)
    # A callback returning False stops after that epoch.
    stopped = net.fit(X, y, epochs=10, lr=0.5, batch_size=6, seed=3, callback=lambda e, c: e < 1)
    assert stopped.shape == (2,)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_with_zero_epochs_changes_nothing(dtype):
    net = make_network("one-hidden-tanh", dtype)
    X, y = make_data(net)
    before = parameters(net)
    history = net.fit(X, y, epochs=0)
    assert history.shape == (0,)
    assert_bitwise_equal(parameters(net), before)


# -- copy and pickle ------------------------------------------------------------------

CLONERS = {
    "copy-method": lambda net: net.copy(),
    "copy.copy": copy.copy,
    "copy.deepcopy": copy.deepcopy,
    "pickle-protocol-2": lambda net: pickle.loads(pickle.dumps(net, protocol=2)),
    "pickle-highest": lambda net: pickle.loads(pickle.dumps(net, protocol=pickle.HIGHEST_PROTOCOL)),
}


def trained_network(name, dtype):
    net = make_network(name, dtype, seed=4)
    X, y = make_data(net, num_records=16)
    net.fit(X, y, epochs=2, lr=0.2, batch_size=5, seed=0)  # nonzero biases, non-initial weights
    return net, X, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["one-hidden-tanh", "mixed-list-mse"])
@pytest.mark.parametrize("cloner", list(CLONERS))
def test_clone_is_bitwise_equal(cloner, name, dtype):
    net, X, y = trained_network(name, dtype)
    clone = CLONERS[cloner](net)
    assert type(clone) is cr.Network
    assert clone.layer_sizes == net.layer_sizes and clone.activations == net.activations
    assert clone.loss == net.loss and clone.dtype == net.dtype and clone.n_params == net.n_params
    assert_bitwise_equal(parameters(clone), parameters(net))
    assert net.predict(X).tobytes() == clone.predict(X).tobytes()
    assert net.cost(X, y) == clone.cost(X, y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cloner", list(CLONERS))
def test_clone_has_independent_memory(cloner, dtype):
    net, X, y = trained_network("mixed-list-mse", dtype)
    clone = CLONERS[cloner](net)
    for a in list(net.weights) + list(net.biases):
        for b in list(clone.weights) + list(clone.biases):
            assert not np.shares_memory(a, b)
    original = parameters(net)
    clone.weights[0][...] = 0.0
    clone.fit(X, y, epochs=2, lr=0.1, batch_size=4, seed=1)
    assert_bitwise_equal(parameters(net), original)
    cloned = parameters(clone)
    net.biases[0][...] = 5.0
    net.sgd_step(X, y, 0.1)
    assert_bitwise_equal(parameters(clone), cloned)


@pytest.mark.parametrize("dtype", DTYPES)
def test_clone_views_belong_to_the_clone(dtype):
    net, X, _ = trained_network("one-hidden-tanh", dtype)
    clone = pickle.loads(pickle.dumps(net))
    clone.weights[-1][...] = 0.0
    clone.biases[-1][...] = 0.0
    assert np.all(clone.predict(X) == 0.5)  # sigmoid(0)
    assert not np.all(net.predict(X) == 0.5)


def test_fit_callback_uses_python_truthiness():
    X = np.ascontiguousarray(np.random.default_rng(0).standard_normal((20, 3)))
    y = (X[:, :1] > 0).astype(np.float64)
    net = cr.Network([3, 1], seed=0)
    assert len(net.fit(X, y, epochs=5, seed=0, callback=lambda epoch, cost: epoch < 2 and "go on")) == 3
    assert len(net.fit(X, y, epochs=5, seed=0, callback=lambda epoch, cost: [])) == 1  # falsy: stop


def test_a_callback_that_writes_nan_into_the_weights_is_caught():
    X = np.ascontiguousarray(np.random.default_rng(1).standard_normal((20, 3)))
    y = (X[:, :1] > 0).astype(np.float64)
    net = cr.Network([3, 2, 1], seed=0)

    def poison(epoch, cost):
        net.weights[0][0, 0] = np.nan

    with pytest.raises(ValueError, match=r"weights\[0\].*non-finite"):
        net.fit(X, y, epochs=3, seed=0, callback=poison)


def test_unpickling_a_state_of_another_dtype_or_shape_is_refused():
    net = cr.Network([3, 2, 1], dtype="float32", seed=0)
    state = net.__getstate__()
    for params in (state["params"].astype(np.float64), state["params"][:-1], list(state["params"])):
        bad = dict(state, params=params)
        with pytest.raises(ValueError, match="params"):
            cr.Network.__new__(cr.Network).__setstate__(bad)


# -- DLPack: torch tensors (and other DLPack arrays) are read in place ------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_tensors_are_read_in_place_through_dlpack(dtype):
    torch = pytest.importorskip("torch")
    from chainrule.network import _in_place

    rng = np.random.default_rng(0)
    X = np.ascontiguousarray(rng.standard_normal((20, 3)), dtype=dtype)
    y = np.ascontiguousarray((rng.random((20, 2)) < 0.5), dtype=dtype)
    Xt, yt = torch.from_numpy(X.copy()), torch.from_numpy(y.copy())
    view = _in_place(Xt)
    assert view.__array_interface__["data"][0] == Xt.data_ptr()  # the tensor's own memory: no copy
    net = cr.Network([3, 4, 2], dtype=dtype, seed=1)
    twin = net.copy()
    assert net.predict(Xt).tobytes() == net.predict(X).tobytes()
    assert net.cost(Xt, yt) == net.cost(X, y)
    assert net.fit(Xt, yt, epochs=2, seed=0).tobytes() == twin.fit(X, y, epochs=2, seed=0).tobytes()
    assert all(a.tobytes() == b.tobytes() for a, b in zip(net.weights, twin.weights))


def test_dlpack_arrays_get_the_rules_of_numpy_arrays():
    torch = pytest.importorskip("torch")
    net = cr.Network([3, 4, 2], dtype="float64", seed=1)
    with pytest.raises(TypeError, match="X has dtype float32"):  # never converted
        net.predict(torch.zeros((5, 3), dtype=torch.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        net.predict(torch.zeros((3, 5), dtype=torch.float64).T)
