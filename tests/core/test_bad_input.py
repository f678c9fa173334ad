"""Bad input: every entry point raises a Python exception that names the
argument, leaves the network bitwise as it was, and never crashes.

Arrays are read in place, so anything that would need a conversion (another
dtype, another memory order, a list) is refused with a message that says how
to get the expected array: np.ascontiguousarray(X, dtype=...).
"""

import re

import numpy as np
import pytest

import chainrule as cr

DTYPES = ["float32", "float64"]
NUM_RECORDS, NUM_INPUTS, NUM_OUTPUTS = 6, 3, 2


def other_dtype(dtype):
    return "float64" if dtype == "float32" else "float32"


def make_network(dtype, loss="bce"):
    output = "sigmoid" if loss == "bce" else "identity"
    return cr.Network([NUM_INPUTS, 5, NUM_OUTPUTS], activation="tanh", output=output, loss=loss, dtype=dtype, seed=0)


def make_data(dtype, seed=1):
    """C-contiguous X (6, 3) and 0/1 targets y (6, 2) of `dtype`: valid for bce and mse."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((NUM_RECORDS, NUM_INPUTS))
    y = (rng.random((NUM_RECORDS, NUM_OUTPUTS)) < 0.5).astype(np.float64)
    return np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(y, dtype=dtype)


def snapshot(net):
    """Bitwise copies of every weight and bias array."""
    return [(a.dtype, a.shape, a.tobytes()) for a in list(net.weights) + list(net.biases)]


def assert_unchanged(net, before):
    assert snapshot(net) == before, "the network's parameters changed although the call failed"


def call(net, method, X, y, **options):
    """Calls `method` with valid defaults for every argument not given."""
    if method == "predict":
        return net.predict(X)
    if method == "cost":
        return net.cost(X, y)
    if method == "gradients":
        return net.gradients(X, y)
    if method == "sgd_step":
        return net.sgd_step(X, y, options.get("lr", 0.1))
    if method == "fit":
        kwargs = {"epochs": 2, "lr": 0.1, "batch_size": 4, "seed": 0}
        kwargs.update(options)
        return net.fit(X, y, **kwargs)
    raise AssertionError(method)


def names(argument):
    """A regex that finds `argument` as a word (X, y, lr, ...) in a message."""
    return rf"(?<![A-Za-z0-9_]){re.escape(argument)}(?![A-Za-z0-9_])"


def assert_still_works(net, dtype):
    """The failed call broke nothing: the network trains exactly like an untouched copy."""
    twin = net.copy()
    X, y = make_data(dtype, seed=7)
    assert net.sgd_step(X, y, 0.1) == twin.sgd_step(X, y, 0.1)
    assert snapshot(net) == snapshot(twin)


# -- malformed arrays ---------------------------------------------------------------


def with_value(array, index, value):
    bad = array.copy()
    bad[index] = value
    return bad


def unaligned(array):
    """A C-contiguous copy of `array` whose data starts one byte past an aligned address."""
    raw = np.zeros(array.nbytes + 1, dtype=np.uint8)
    bad = np.frombuffer(raw.data, dtype=array.dtype, count=array.size, offset=1).reshape(array.shape)
    bad[...] = array
    assert bad.flags.c_contiguous and not bad.flags.aligned
    return bad


def every_other_row(array):
    bad = np.repeat(array, 2, axis=0)[::2]
    assert bad.shape == array.shape and not bad.flags.c_contiguous
    return bad


def transposed(array):
    bad = np.ascontiguousarray(array.T).T
    assert bad.shape == array.shape and not bad.flags.c_contiguous
    return bad


def column_slice(array):
    bad = np.concatenate([array, array], axis=1)[:, : array.shape[1]]
    assert bad.shape == array.shape and not bad.flags.c_contiguous
    return bad


def big_endian(array):
    bad = array.astype(array.dtype.newbyteorder(">"))
    assert bad.flags.c_contiguous
    return bad


# Each case: (make the bad array from a good one, expected exception, whether
# the message must show np.ascontiguousarray(<name>, dtype=np.<dtype>)).
ARRAY_CASES = {
    "nan-first": (lambda a: with_value(a, (0, 0), np.nan), ValueError, False),
    "nan-last": (lambda a: with_value(a, (-1, -1), np.nan), ValueError, False),
    "inf": (lambda a: with_value(a, (2, 1), np.inf), ValueError, False),
    "minus-inf": (lambda a: with_value(a, (-1, 0), -np.inf), ValueError, False),
    "other-float-dtype": (lambda a: a.astype(other_dtype(a.dtype.name)), TypeError, True),
    "float16": (lambda a: a.astype(np.float16), TypeError, True),
    "int64": (lambda a: a.astype(np.int64), TypeError, True),
    "int32": (lambda a: a.astype(np.int32), TypeError, True),
    "bool": (lambda a: a.astype(bool), TypeError, True),
    "object": (lambda a: a.astype(object), TypeError, True),
    "complex": (lambda a: a.astype(np.complex128), TypeError, True),
    "big-endian": (big_endian, TypeError, True),
    "fortran-order": (np.asfortranarray, ValueError, True),
    "every-other-row": (every_other_row, ValueError, True),
    "transposed": (transposed, ValueError, True),
    "column-slice": (column_slice, ValueError, True),
    "reversed-rows": (lambda a: a[::-1], ValueError, True),
    "unaligned": (unaligned, ValueError, True),
    "list": (lambda a: a.tolist(), TypeError, True),
    "tuple": (lambda a: tuple(map(tuple, a.tolist())), TypeError, True),
    "none": (lambda a: None, TypeError, False),
    "0-d": (lambda a: np.array(a[0, 0]), ValueError, False),
    "3-d": (lambda a: a[None], ValueError, False),
}

X_CASES = dict(ARRAY_CASES)
X_CASES.update({
    "1-d": (lambda X: X[0], ValueError, False),
    "0-records": (lambda X: X[:0], ValueError, False),
    "0-features": (lambda X: np.empty((len(X), 0), dtype=X.dtype), ValueError, False),
    "too-few-features": (lambda X: np.ascontiguousarray(X[:, :-1]), ValueError, False),
    "too-many-features": (lambda X: np.concatenate([X, X[:, :1]], axis=1), ValueError, False),
})

Y_CASES = dict(ARRAY_CASES)
Y_CASES.update({
    "1-d-for-2-outputs": (lambda y: np.ascontiguousarray(y[:, 0]), ValueError, False),
    "0-records": (lambda y: y[:0], ValueError, False),
    "too-few-records": (lambda y: y[:-1], ValueError, False),
    "too-many-records": (lambda y: np.concatenate([y, y[:1]]), ValueError, False),
    "0-outputs": (lambda y: np.empty((len(y), 0), dtype=y.dtype), ValueError, False),
    "too-few-outputs": (lambda y: np.ascontiguousarray(y[:, :1]), ValueError, False),
    "too-many-outputs": (lambda y: np.concatenate([y, y[:, :1]], axis=1), ValueError, False),
    "bce-target-above-1": (lambda y: with_value(y, (3, 1), 1.5), ValueError, False),
    "bce-target-below-0": (lambda y: with_value(y, (0, 0), -0.25), ValueError, False),
    "bce-target-just-above-1": (lambda y: with_value(y, (5, 0), np.nextafter(y.dtype.type(1), y.dtype.type(2))),
                                ValueError, False),
})

ALL_METHODS = ["predict", "cost", "gradients", "sgd_step", "fit"]
TARGET_METHODS = ["cost", "gradients", "sgd_step", "fit"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("case", list(X_CASES))
def test_bad_X_is_refused(case, method, dtype):
    make_bad, error, shows_fix = X_CASES[case]
    net = make_network(dtype)
    X, y = make_data(dtype)
    bad = make_bad(X)
    before = snapshot(net)
    with pytest.raises(error, match=names("X")) as raised:
        call(net, method, bad, y)
    if shows_fix:
        assert f"np.ascontiguousarray(X, dtype=np.{dtype})" in str(raised.value)
    assert_unchanged(net, before)
    assert_still_works(net, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", TARGET_METHODS)
@pytest.mark.parametrize("case", list(Y_CASES))
def test_bad_y_is_refused(case, method, dtype):
    make_bad, error, shows_fix = Y_CASES[case]
    net = make_network(dtype)
    X, y = make_data(dtype)
    bad = make_bad(y)
    before = snapshot(net)
    with pytest.raises(error, match=names("y")) as raised:
        call(net, method, X, bad)
    if shows_fix:
        assert f"np.ascontiguousarray(y, dtype=np.{dtype})" in str(raised.value)
    assert_unchanged(net, before)
    assert_still_works(net, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", TARGET_METHODS)
def test_empty_X_and_y_are_refused(method, dtype):
    net = make_network(dtype)
    X, y = make_data(dtype)
    before = snapshot(net)
    with pytest.raises(ValueError, match=names("X")):
        call(net, method, X[:0], y[:0])
    assert_unchanged(net, before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", TARGET_METHODS)
def test_1d_y_of_the_wrong_length_is_refused(method, dtype):
    net = cr.Network([NUM_INPUTS, 4, 1], activation="tanh", dtype=dtype, seed=0)
    X, y = make_data(dtype)
    before = snapshot(net)
    with pytest.raises(ValueError, match=names("y")):
        call(net, method, X, np.ascontiguousarray(y[:-1, 0]))
    assert_unchanged(net, before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", TARGET_METHODS)
def test_mse_targets_outside_0_1_are_accepted_but_non_finite_ones_are_not(method, dtype):
    net = make_network(dtype, loss="mse")
    X, y = make_data(dtype)
    call(net, method, X, (y * 4 - 2).astype(dtype))
    before = snapshot(net)
    with pytest.raises(ValueError, match=names("y")):
        call(net, method, X, with_value(y, (1, 1), np.nan))
    assert_unchanged(net, before)


# -- lr, epochs, batch_size -----------------------------------------------------------

LR_CASES = {
    "nan": (float("nan"), ValueError),
    "inf": (float("inf"), ValueError),
    "minus-inf": (float("-inf"), ValueError),
    "zero": (0, ValueError),
    "zero-float": (0.0, ValueError),
    "minus-zero": (-0.0, ValueError),
    "negative": (-1, ValueError),
    "negative-small": (-1e-12, ValueError),
    "numpy-nan": (np.float64("nan"), ValueError),
    "string": ("0.1", TypeError),
    "none": (None, TypeError),
    "bool": (True, TypeError),
    "complex": (0.1 + 0j, TypeError),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case, method", [(case, method) for method in ["sgd_step", "fit"] for case in LR_CASES
                                          # fit(lr=None) is its default rate: test_fit_lr_none_is_the_default
                                          if not (case == "none" and method == "fit")])
def test_bad_learning_rate_is_refused(case, method, dtype):
    lr, error = LR_CASES[case]
    net = make_network(dtype)
    X, y = make_data(dtype)
    before = snapshot(net)
    with pytest.raises(error, match=names("lr")):
        call(net, method, X, y, lr=lr)
    assert_unchanged(net, before)
    assert_still_works(net, dtype)


def test_fit_lr_none_is_the_default():
    X, y = make_data("float64")
    a, b = make_network("float64"), make_network("float64")
    assert np.array_equal(a.fit(X, y, epochs=2, seed=0), b.fit(X, y, epochs=2, lr=0.1, seed=0))
    assert all(np.array_equal(u, v) for u, v in zip(a.weights, b.weights))


@pytest.mark.parametrize("lr", [1e-50, 1e39], ids=["rounds-to-zero", "overflows"])
@pytest.mark.parametrize("method", ["sgd_step", "fit"])
def test_learning_rate_that_float32_cannot_hold_is_refused(method, lr):
    # A float32 network steps with lr rounded to float32: 1e-50 > 0 becomes 0,
    # and the step would silently do nothing; 1e39 becomes inf. For this
    # network that is an lr <= 0 or not finite, refused up front, naming lr.
    with np.errstate(over="ignore"):
        assert lr > 0 and not (0 < np.float32(lr) < np.inf)
    net = make_network("float32")
    X, y = make_data("float32")
    before = snapshot(net)
    with pytest.raises(ValueError, match=names("lr")):
        call(net, method, X, y, lr=lr)
    assert_unchanged(net, before)


FIT_INTEGER_CASES = {
    "epochs-negative": ("epochs", -1, ValueError),
    "epochs-very-negative": ("epochs", -(2**40), ValueError),
    "epochs-float": ("epochs", 1.5, TypeError),
    "epochs-integral-float": ("epochs", 2.0, TypeError),
    "epochs-string": ("epochs", "3", TypeError),
    "epochs-none": ("epochs", None, TypeError),
    "epochs-numpy-float": ("epochs", np.float64(2.0), TypeError),
    "batch_size-zero": ("batch_size", 0, ValueError),
    "batch_size-negative": ("batch_size", -4, ValueError),
    "batch_size-float": ("batch_size", 2.5, TypeError),
    "batch_size-integral-float": ("batch_size", 4.0, TypeError),
    "batch_size-string": ("batch_size", "4", TypeError),
    "batch_size-none": ("batch_size", None, TypeError),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(FIT_INTEGER_CASES))
def test_bad_epochs_or_batch_size_is_refused(case, dtype):
    argument, value, error = FIT_INTEGER_CASES[case]
    net = make_network(dtype)
    X, y = make_data(dtype)
    before = snapshot(net)
    with pytest.raises(error, match=names(argument)):
        call(net, "fit", X, y, **{argument: value})
    assert_unchanged(net, before)
    assert_still_works(net, dtype)


@pytest.mark.parametrize("argument, value, least", [
    ("batch_size", 0, 1), ("batch_size", -3, 1), ("epochs", -1, 0),
    ("n_iter_no_change", 0, 1), ("n_iter_no_change", -2, 1),
])
def test_a_count_below_the_least_value_names_the_same_rule_whether_zero_or_negative(argument, value, least):
    # 0 is refused by the core, a negative by Python (the core's counts are
    # unsigned): the message states the one rule either way.
    net = make_network("float64")
    X, y = make_data("float64")
    with pytest.raises(ValueError, match=rf"{argument} must be >= {least}, got {value}$"):
        call(net, "fit", X, y, tol=0.1, **{argument: value})


def test_a_negative_layer_size_names_the_least_size():
    with pytest.raises(ValueError, match=r"layer_sizes\[1\] must be >= 1, got -2"):
        cr.Network([3, -2, 1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_integers_are_accepted_for_epochs_and_batch_size(dtype):
    net = make_network(dtype)
    X, y = make_data(dtype)
    history = net.fit(X, y, epochs=np.int64(2), batch_size=np.int32(3), lr=np.float32(0.1), seed=0)
    assert history.shape == (2,)


# -- construction ---------------------------------------------------------------------

CONSTRUCTOR_CASES = {
    "layer-size-zero-hidden": (([3, 0, 2], {}), ValueError, "layer_sizes"),
    "layer-size-zero-input": (([0, 2], {}), ValueError, "layer_sizes"),
    "layer-size-zero-output": (([3, 0], {}), ValueError, "layer_sizes"),
    "layer-size-negative": (([3, -4, 2], {}), ValueError, "layer_sizes"),
    "layer-size-minus-one-input": (([-1, 2], {}), ValueError, "layer_sizes"),
    "layer-size-float": (([3, 4.0, 2], {}), TypeError, "layer_sizes"),
    "layer-size-string": (([3, "4", 2], {}), TypeError, "layer_sizes"),
    "layer-size-none": (([3, None, 2], {}), TypeError, "layer_sizes"),
    "layer-size-bool": (([3, True, 2], {}), TypeError, "layer_sizes"),
    "one-size": (([3], {}), ValueError, "layer_sizes"),
    "no-sizes": (([], {}), ValueError, "layer_sizes"),
    "sizes-not-a-sequence": ((3, {}), TypeError, "layer_sizes"),
    "sizes-a-string": (("32", {}), TypeError, "layer_sizes"),
    "unknown-activation": (([3, 4, 2], {"activation": "softmax"}), ValueError, "activation"),
    "unknown-activation-in-list": (([3, 4, 4, 2], {"activation": ["tanh", "gelu"]}), ValueError, "activation"),
    "activation-wrong-case": (([3, 4, 2], {"activation": "ReLU"}), ValueError, "activation"),
    "activation-not-a-string": (([3, 4, 4, 2], {"activation": ["tanh", 3]}), TypeError, "activation"),
    "too-few-activation-names": (([3, 4, 4, 2], {"activation": ["tanh"]}), ValueError, "activation"),
    "too-many-activation-names": (([3, 4, 2], {"activation": ["tanh", "relu"]}), ValueError, "activation"),
    "activation-names-without-hidden-layers": (([3, 2], {"activation": ["tanh"]}), ValueError, "activation"),
    "unknown-output": (([3, 4, 2], {"output": "softmax"}), ValueError, "output"),
    "output-not-a-string": (([3, 4, 2], {"output": None}), TypeError, "output"),
    "unknown-loss": (([3, 4, 2], {"loss": "hinge"}), ValueError, "loss"),
    "loss-wrong-case": (([3, 4, 2], {"loss": "BCE"}), ValueError, "loss"),
    "loss-not-a-string": (([3, 4, 2], {"loss": None}), TypeError, "loss"),
    "bce-with-identity-output": (([3, 4, 2], {"output": "identity", "loss": "bce"}), ValueError, "loss"),
    "bce-with-tanh-output": (([3, 4, 2], {"output": "tanh", "loss": "bce"}), ValueError, "loss"),
    "bce-with-relu-output": (([3, 4, 2], {"output": "relu", "loss": "bce"}), ValueError, "loss"),
    "dtype-float16": (([3, 4, 2], {"dtype": "float16"}), ValueError, "dtype"),
    "dtype-int32": (([3, 4, 2], {"dtype": "int32"}), ValueError, "dtype"),
    "dtype-python-int": (([3, 4, 2], {"dtype": int}), ValueError, "dtype"),
    "dtype-unknown-name": (([3, 4, 2], {"dtype": "double-ish"}), ValueError, "dtype"),
    "dtype-complex": (([3, 4, 2], {"dtype": np.complex128}), ValueError, "dtype"),
}


@pytest.mark.parametrize("case", list(CONSTRUCTOR_CASES))
def test_bad_constructor_argument_is_refused(case):
    (sizes, kwargs), error, argument = CONSTRUCTOR_CASES[case]
    with pytest.raises(error, match=names(argument)):
        cr.Network(sizes, seed=0, **kwargs)


@pytest.mark.parametrize("output", ["identity", "tanh", "relu"])
def test_bce_with_a_non_sigmoid_output_says_what_it_needs(output):
    with pytest.raises(ValueError) as raised:
        cr.Network([3, 4, 1], output=output, loss="bce", seed=0)
    message = str(raised.value)
    assert re.search(names("loss"), message) and "sigmoid" in message and output in message


TOO_LARGE = {
    "1e6-by-1e6": [10**6, 10**6, 1],
    "2^40-by-2^40-overflows": [2**40, 2**40, 1],
    "2^62-by-4-overflows": [2**62, 4],
    "2^32-cubed-overflows": [2**32, 2**32, 2**32],
    "size-2^63": [2**63, 2],
    "size-2^64": [2**64, 2],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(TOO_LARGE))
def test_network_too_large_to_allocate_raises_memory_error(case, dtype):
    with pytest.raises(MemoryError) as raised:
        cr.Network(TOO_LARGE[case], dtype=dtype, seed=0)
    assert str(raised.value)  # says what it could not allocate


# -- divergence -------------------------------------------------------------------------


def diverging_setup(dtype):
    """MSE with identity layers, inputs of scale 10 and lr 0.2: the product of the
    two weight layers grows faster than geometrically, to overflow within one epoch."""
    rng = np.random.default_rng(0)
    net = cr.Network([4, 16, 1], activation="identity", output="identity", loss="mse", dtype=dtype, seed=0)
    X = np.ascontiguousarray(rng.standard_normal((64, 4)) * 10, dtype=dtype)
    y = np.ascontiguousarray(rng.standard_normal(64) * 10, dtype=dtype)
    return net, X, y


def all_finite(net):
    return all(np.all(np.isfinite(a)) for a in list(net.weights) + list(net.biases))


def test_divergence_error_is_a_floating_point_error():
    assert issubclass(cr.DivergenceError, FloatingPointError)
    assert issubclass(cr.DivergenceError, ArithmeticError)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_divergence_restores_the_last_finite_parameters(dtype):
    net, X, y = diverging_setup(dtype)
    initial = snapshot(net)
    replay = net.copy()
    with pytest.raises(cr.DivergenceError, match=r"diverge|non-finite|not finite") as raised:
        net.fit(X, y, epochs=20, lr=0.2, batch_size=8, shuffle=False)
    assert isinstance(raised.value, FloatingPointError)
    assert all_finite(net)
    assert snapshot(net) != initial  # some steps completed before the divergence

    # Replay the same in-order batches step by step: the fit must hold exactly
    # the parameters from before the first step that diverges.
    steps = 0
    with pytest.raises(cr.DivergenceError):
        for _ in range(20):
            for start in range(0, len(X), 8):
                replay.sgd_step(X[start:start + 8], y[start:start + 8], 0.2)
                steps += 1
    assert steps > 0
    assert snapshot(net) == snapshot(replay)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_divergence_with_shuffling_leaves_finite_parameters(dtype):
    net, X, y = diverging_setup(dtype)
    with pytest.raises(cr.DivergenceError):
        net.fit(X, y, epochs=20, lr=0.2, batch_size=8, shuffle=True, seed=3)
    assert all_finite(net)
    # Usable: predict works on the last finite parameters. Its forward pass on
    # the inputs that made training diverge may overflow; then it says so
    # (DivergenceError) rather than returning inf or NaN.
    try:
        out = net.predict(X)
    except cr.DivergenceError as error:
        assert "overflow" in str(error)
    else:
        assert np.all(np.isfinite(out))


def overflowing_update(dtype):
    """One finite cost whose SGD update overflows: inputs near sqrt(max), a huge lr."""
    scale = np.sqrt(np.finfo(dtype).max) / 1e4
    net = cr.Network([3, 1], output="identity", loss="mse", dtype=dtype, seed=0)
    X = np.full((4, 3), scale, dtype=dtype)
    y = np.zeros(4, dtype=dtype)
    lr = float(np.finfo(dtype).max) / 1e3
    return net, X, y, lr


def overflowing_forward(dtype):
    """Finite inputs whose forward pass overflows: weights of 1 on inputs of max/2."""
    net = cr.Network([3, 1], output="identity", loss="mse", dtype=dtype, seed=0)
    net.weights[0][...] = 1.0
    X = np.full((4, 3), np.finfo(dtype).max / 2, dtype=dtype)
    y = np.zeros(4, dtype=dtype)
    return net, X, y, 0.1


DIVERGING_STEPS = {"update-overflows": overflowing_update, "forward-overflows": overflowing_forward}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["sgd_step", "fit"])
@pytest.mark.parametrize("case", list(DIVERGING_STEPS))
def test_a_diverging_first_step_leaves_the_parameters_unchanged(case, method, dtype):
    net, X, y, lr = DIVERGING_STEPS[case](dtype)
    if case == "update-overflows":
        assert np.isfinite(net.cost(X, y))
    else:  # the cost overflows: cost says so rather than return inf
        with pytest.raises(cr.DivergenceError, match="overflow"):
            net.cost(X, y)
    before = snapshot(net)
    with pytest.raises(cr.DivergenceError, match=r"diverge|non-finite|not finite"):
        call(net, method, X, y, lr=lr)
    assert_unchanged(net, before)


# -- softmax + cce: only together, only at the output, targets that are distributions --------

SOFTMAX_PAIRINGS = {
    "softmax-with-bce": ({"output": "softmax", "loss": "bce"}, "output"),
    "softmax-with-mse": ({"output": "softmax", "loss": "mse"}, "output"),
    "cce-with-sigmoid": ({"output": "sigmoid", "loss": "cce"}, "loss"),
    "cce-with-identity": ({"output": "identity", "loss": "cce"}, "loss"),
    "softmax-hidden": ({"activation": "softmax", "output": "softmax", "loss": "cce"}, "activation"),
    "softmax-in-hidden-list": ({"activation": ["tanh", "softmax"], "output": "softmax", "loss": "cce"},
                               "activation"),
}


@pytest.mark.parametrize("case", list(SOFTMAX_PAIRINGS))
def test_softmax_and_cce_only_together_at_the_output(case):
    kwargs, argument = SOFTMAX_PAIRINGS[case]
    sizes = [3, 4, 4, 2] if isinstance(kwargs.get("activation"), list) else [3, 4, 2]
    with pytest.raises(ValueError, match=names(argument)) as raised:
        cr.Network(sizes, seed=0, **kwargs)
    message = str(raised.value)
    assert "softmax" in message and ("cce" in message or "output" in message)


def test_softmax_over_a_single_output_is_refused():
    with pytest.raises(ValueError, match=names("output")):
        cr.Network([3, 1], output="softmax", loss="cce", seed=0)


def make_softmax_network(dtype):
    return cr.Network([NUM_INPUTS, 5, 3], activation="tanh", output="softmax", loss="cce", dtype=dtype, seed=0)


CCE_TARGETS = {
    "row-sums-to-0.9": ([[0.0, 0.9, 0.0]], "sums to"),
    "row-sums-to-2": ([[1.0, 1.0, 0.0]], "sums to"),
    "all-zero-row": ([[0.0, 0.0, 0.0]], "sums to"),
    "negative-value": ([[-0.5, 1.5, 0.0]], r"\[0, 1\]"),
    "above-one": ([[1.5, -0.25, -0.25]], r"\[0, 1\]"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", TARGET_METHODS)
@pytest.mark.parametrize("case", list(CCE_TARGETS))
def test_cce_targets_that_are_not_distributions_are_refused(case, method, dtype):
    net = make_softmax_network(dtype)
    before = snapshot(net)
    X, _ = make_data(dtype)
    y = np.ascontiguousarray(np.tile(np.eye(3)[0], (NUM_RECORDS, 1)), dtype=dtype)
    bad_row, message = CCE_TARGETS[case]
    y[NUM_RECORDS - 1] = bad_row[0]
    with pytest.raises(ValueError, match=message) as raised:
        call(net, method, X, y)
    assert re.search(names("y"), str(raised.value)) and "record 5" in str(raised.value)
    assert_unchanged(net, before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cce_accepts_soft_labels_within_the_tolerance(dtype):
    """Rows summing to 1 up to rounding in the dtype (here: normalised in float64, then cast)."""
    net = make_softmax_network(dtype)
    X, _ = make_data(dtype)
    P = np.random.default_rng(3).random((NUM_RECORDS, 3)) + 0.01
    y = np.ascontiguousarray(P / P.sum(axis=1, keepdims=True), dtype=dtype)
    assert np.isfinite(net.cost(X, y))
    net.fit(X, y, epochs=2, lr=0.1, batch_size=4, seed=0)
