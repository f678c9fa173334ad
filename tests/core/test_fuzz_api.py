"""Property-based fuzzing of every public entry point of chainrule.Network.

Random shapes, dtypes, memory orders and strides, NaN/inf, empty and huge
sizes, out-of-range hyperparameters and mismatched X/y are thrown at the
constructor, predict, cost, gradients, sgd_step, fit, save and load. The
property, for every call:

* either a correct result: the right type and shape, finite, and equal to a
  cheap oracle (tests/reference.py, the plain-NumPy implementation of docs/math.md,
  for predict, cost, gradients and sgd_step; the documented layout for the
  constructor; a bitwise round trip for save/load);
* or a TypeError, ValueError or MemoryError (OSError for a path the operating
  system refuses) whose message names an argument that is wrong (``X``, ``y``,
  ``lr``, ``layer_sizes``, ...), and not pybind11's "incompatible function
  arguments" signature dump, which names every argument and explains nothing;
* and after an error the network is bitwise unchanged.

An oracle below (``array_problem`` and friends) decides independently of the
library whether each argument is valid, so "it raised" is only accepted when
something really was wrong, and "it returned" only when nothing was.

CI runs the derandomized ``chainrule-fuzz-ci`` settings: ``CI_EXAMPLES`` (= 120)
examples per test, the same examples on every run: 24 tests, about 2,900 cases
in all (~10 s on two cores; a test stops early at its first failure, which
hypothesis then shrinks). A longer, randomized run (a new search each time) is
one command::

    CHAINRULE_FUZZ_EXAMPLES=20000 python -m pytest tests/core/test_fuzz_api.py --hypothesis-show-statistics

(add ``--hypothesis-seed=N`` to repeat one such run). Cases that need more
than a tiny network are kept out: a network of valid but large sizes would
really be allocated, so "huge" sizes here are astronomically huge (>= 2**40
parameters), which must fail fast with MemoryError.
"""

import math
import numbers
import os
import pathlib
import re
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

import chainrule as cr
import reference

CI_EXAMPLES = 120
LONG_EXAMPLES = int(os.environ.get("CHAINRULE_FUZZ_EXAMPLES", "0") or 0)

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]  # no slow "explain"
settings.register_profile("chainrule-fuzz-ci", max_examples=CI_EXAMPLES, derandomize=True, deadline=None,
                          database=None, print_blob=True, suppress_health_check=_QUIET, phases=_PHASES)
settings.register_profile("chainrule-fuzz-long", max_examples=max(LONG_EXAMPLES, 1), derandomize=False,
                          deadline=None, print_blob=True, suppress_health_check=_QUIET, phases=_PHASES)
FUZZ = settings(settings.get_profile("chainrule-fuzz-long" if LONG_EXAMPLES else "chainrule-fuzz-ci"))

# Saves flush to disk; thousands of them go to tmpfs where there is one.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None

DTYPES = ("float32", "float64")
ACTIVATIONS = tuple(name for name in cr.ACTIVATIONS if name != "softmax")  # every elementwise activation
REFUSALS = (TypeError, ValueError, MemoryError)


# -- what a good refusal looks like --------------------------------------------------


def names(argument):
    """A regex that finds `argument` as a word (X, y, lr, layer_sizes[2] ...) in a message."""
    return rf"(?<![A-Za-z0-9_]){re.escape(argument)}(?![A-Za-z0-9_])"


def assert_refusal_names(error, arguments):
    """`error` is a clear refusal that names one of `arguments` (the wrong ones)."""
    message = str(error)
    note(f"refused with {type(error).__name__}: {message}")
    assert "incompatible function arguments" not in message and "incompatible constructor arguments" not in message, \
        f"pybind11's signature dump instead of a message naming {sorted(arguments)}: {message[:200]}"
    assert any(re.search(names(a), message) for a in arguments), \
        f"{type(error).__name__} does not name any of {sorted(arguments)}: {message!r}"


def snapshot(net):
    return [(a.dtype.str, a.shape, a.tobytes()) for a in list(net.weights) + list(net.biases)]


def call_and_classify(function, *args, **kwargs):
    """(result, None) or (None, exception) for one call."""
    try:
        return function(*args, **kwargs), None
    except Exception as error:  # noqa: BLE001 - the caller judges the type
        return None, error


# -- networks -------------------------------------------------------------------------


@st.composite
def network_specs(draw):
    """A tiny network as constructor arguments (so a failure prints how to rebuild it)."""
    sizes = draw(st.lists(st.integers(1, 5), min_size=2, max_size=4))
    hidden = draw(st.lists(st.sampled_from(ACTIVATIONS), min_size=len(sizes) - 2, max_size=len(sizes) - 2))
    loss = draw(st.sampled_from(["bce", "mse"]))
    output = "sigmoid" if loss == "bce" else draw(st.sampled_from(ACTIVATIONS))
    return {"layer_sizes": sizes, "activation": hidden, "output": output, "loss": loss,
            "dtype": draw(st.sampled_from(DTYPES)), "seed": draw(st.integers(0, 2**64 - 1))}


def build(spec):
    note(f"cr.Network(**{spec!r})")
    return cr.Network(**spec)


def params_of(net):
    return [(W.copy(), b.copy()) for W, b in zip(net.weights, net.biases)]


# -- arrays: what is thrown, and the oracle that judges it -------------------------------

# Each defect turns a good array (C-contiguous, of the network's dtype) into
# something else. "valid-*" defects keep it valid on purpose.
ARRAY_DEFECTS = [
    "none", "none", "none", "none", "none", "none",
    "valid-readonly", "valid-row-slice", "valid-many-records", "valid-fortran-1-column",
    "list", "tuple", "None", "scalar", "string", "bytes", "memoryview",
    "other-float-dtype", "float16", "int64", "int32", "bool", "complex", "object", "big-endian",
    "fortran", "every-other-row", "column-slice", "reversed-rows", "unaligned", "broadcast-huge",
    "0-d", "1-d", "3-d", "too-many-columns", "too-few-columns", "no-columns", "no-records",
    "nan", "inf", "-inf", "too-many-records", "too-few-records", "bce-out-of-range",
]


def good_values(rng, shape, role, loss):
    if role == "y" and loss == "bce":
        return np.where(rng.random(shape) < 0.3, rng.random(shape), (rng.random(shape) < 0.5).astype(float))
    scale = rng.choice([0.0, 1e-3, 1.0, 10.0])
    return rng.uniform(-1, 1, shape) * scale


def unaligned(array):
    raw = np.zeros(array.nbytes + 1, dtype=np.uint8)
    bad = np.frombuffer(raw.data, dtype=array.dtype, count=array.size, offset=1).reshape(array.shape)
    bad[...] = array
    return bad


@st.composite
def array_arguments(draw, spec, role, num_records):
    """(object passed as X or y, defect) for a network built from `spec`."""
    dtype = np.dtype(spec["dtype"])
    sizes = spec["layer_sizes"]
    columns = sizes[0] if role == "X" else sizes[-1]
    defect = draw(st.sampled_from(ARRAY_DEFECTS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rows = num_records
    if defect == "valid-many-records":
        rows = 300 + num_records  # more than one of the core's 256-record chunks
    if defect in ("too-many-records", "too-few-records") and role == "y":
        rows = num_records + (1 if defect == "too-many-records" else -1)
    if defect == "no-records":
        rows = 0
    cols = {"too-many-columns": columns + 1, "too-few-columns": columns - 1, "no-columns": 0}.get(defect, columns)
    good = np.ascontiguousarray(good_values(rng, (max(rows, 0), max(cols, 0)), role, spec["loss"]), dtype=dtype)
    if defect in ("nan", "inf", "-inf") and good.size:
        value = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[defect]
        good.flat[draw(st.integers(0, good.size - 1))] = value
    if defect == "bce-out-of-range" and good.size:
        good.flat[draw(st.integers(0, good.size - 1))] = draw(st.sampled_from([-1e-3, 1.5, -7.0, 1.0 + 1e-6]))
    if role == "y" and columns == 1 and defect == "1-d":
        return np.ascontiguousarray(good[:, 0]), defect  # valid: a 1-D y for a single output
    make = {
        "list": lambda a: a.tolist(),
        "tuple": lambda a: tuple(map(tuple, a.tolist())),
        "None": lambda a: None,
        "scalar": lambda a: 1.5,
        "string": lambda a: "0.5",
        "bytes": lambda a: a.tobytes(),
        "memoryview": lambda a: memoryview(a),
        "other-float-dtype": lambda a: a.astype(np.float64 if dtype == np.float32 else np.float32),
        "float16": lambda a: a.astype(np.float16),
        "int64": lambda a: a.astype(np.int64),
        "int32": lambda a: a.astype(np.int32),
        "bool": lambda a: a.astype(bool),
        "complex": lambda a: a.astype(np.complex128),
        "object": lambda a: a.astype(object),
        "big-endian": lambda a: a.astype(dtype.newbyteorder(">")),
        "fortran": lambda a: np.asfortranarray(a),
        "every-other-row": lambda a: np.repeat(a, 2, axis=0)[::2],
        "column-slice": lambda a: np.concatenate([a, a], axis=1)[:, : a.shape[1]],
        "reversed-rows": lambda a: a[::-1],
        "unaligned": unaligned,
        "broadcast-huge": lambda a: np.broadcast_to(a[:1] if len(a) else np.zeros((1, a.shape[1]), a.dtype),
                                                    (2**40, a.shape[1])),
        "0-d": lambda a: np.asarray(a.flat[0] if a.size else 0.5, dtype=dtype),
        "1-d": lambda a: np.ascontiguousarray(a.reshape(-1)),
        "3-d": lambda a: a[None],
        "valid-readonly": lambda a: readonly(a),
        "valid-row-slice": lambda a: np.concatenate([a, a])[len(a):],
        "valid-fortran-1-column": lambda a: np.asfortranarray(a) if a.shape[1] == 1 else a,
    }.get(defect, lambda a: a)
    return make(good), defect


def readonly(array):
    array.flags.writeable = False
    return array


def array_problem(obj, role, net, x_rows):
    """The exception type the oracle expects for X or y, or None when it is valid.

    Written from the documented contract (network.py, module.cpp's docstrings),
    in the order the checks are documented: type, dtype, memory layout, ndim,
    shape, emptiness, finiteness, the BCE target range.
    """
    if not isinstance(obj, np.ndarray):
        return TypeError
    if obj.dtype != net.dtype:
        return TypeError
    if not (obj.flags.c_contiguous and obj.flags.aligned):
        return ValueError
    columns = net.layer_sizes[0] if role == "X" else net.layer_sizes[-1]
    if role == "X" and obj.ndim != 2:
        return ValueError
    if role == "y" and not (obj.ndim == 2 or (obj.ndim == 1 and columns == 1)):
        return ValueError
    rows = obj.shape[0]
    cols = obj.shape[1] if obj.ndim == 2 else 1
    if rows == 0 or cols != columns:
        return ValueError
    if role == "y" and x_rows is not None and rows != x_rows:
        return ValueError
    if not np.all(np.isfinite(obj)):
        return ValueError
    if role == "y" and net.loss == "bce" and (np.any(obj < 0) or np.any(obj > 1)):
        return ValueError
    return None


def rows_of(X):
    return X.shape[0] if isinstance(X, np.ndarray) and X.ndim >= 1 else None


# -- tolerances for comparing with the float64 reference ----------------------------------


def forward_bound(net, X):
    """An upper bound on |A_l| over the layers, and on the rounding error of the forward pass."""
    a = np.abs(X.astype(np.float64))
    bound = float(a.max(initial=0.0))
    total = 0.0
    for W, b, name in zip(net.weights, net.biases, net.activations):
        a = a @ np.abs(W.astype(np.float64)).T + np.abs(b.astype(np.float64))
        total = max(total, float(a.max(initial=0.0)))
        if name in ("sigmoid", "tanh"):
            a = np.minimum(a, 1.0)
    bound = max(bound, total, 1.0)
    eps = float(np.finfo(net.dtype).eps)
    depth = len(net.weights)
    return bound, 8 * eps * (max(net.layer_sizes) + 2) * depth * bound


def check_predict(net, X, out):
    assert isinstance(out, np.ndarray) and out.dtype == net.dtype
    assert out.shape == (X.shape[0], net.layer_sizes[-1])
    assert np.all(np.isfinite(out)), "predict returned a non-finite value for valid, finite inputs"
    expected = reference.predict(params_of(net), net.activations, X)
    _, error = forward_bound(net, X)
    np.testing.assert_allclose(out.astype(np.float64), expected, rtol=0, atol=error + 1e-300)
    low, high = {"sigmoid": (0, 1), "tanh": (-1, 1), "relu": (0, np.inf)}.get(net.activations[-1], (-np.inf, np.inf))
    assert np.all(out >= low) and np.all(out <= high)


def check_cost(net, X, y, cost):
    assert isinstance(cost, float) and math.isfinite(cost) and cost >= 0
    expected = reference.cost(params_of(net), net.activations, net.loss, X, y)
    bound, error = forward_bound(net, X)
    target = float(np.abs(y).max(initial=0.0))
    tolerance = net.layer_sizes[-1] * (2 * (bound + target + 1) * error + error**2) + 1e-12 * (1 + expected)
    assert abs(cost - expected) <= tolerance, (cost, expected, tolerance)


def check_gradients(net, X, y, grads):
    assert isinstance(grads, list) and len(grads) == len(net.weights)
    for (dW, db), W, b in zip(grads, net.weights, net.biases):
        assert dW.shape == W.shape and db.shape == b.shape and dW.dtype == db.dtype == net.dtype
        assert np.all(np.isfinite(dW)) and np.all(np.isfinite(db)), "a non-finite gradient for valid inputs"
    if net.dtype == np.float64:  # float32 rounding can flip a relu at z ~ 0: compare float64 only
        expected = reference.gradients(params_of(net), net.activations, net.loss, X, y)
        for (dW, db), (eW, eb) in zip(grads, expected):
            scale = 1.0 + max(float(np.abs(eW).max(initial=0)), float(np.abs(eb).max(initial=0)))
            np.testing.assert_allclose(dW, eW, rtol=0, atol=1e-9 * scale)
            np.testing.assert_allclose(db, eb, rtol=0, atol=1e-9 * scale)


# -- predict, cost, gradients, sgd_step, fit: arrays ------------------------------------------


def array_case(draw, spec, with_y=True):
    num_records = draw(st.integers(1, 9))
    X, x_defect = draw(array_arguments(spec, "X", num_records))
    if not with_y:
        return X, None, x_defect, None
    y, y_defect = draw(array_arguments(spec, "y", num_records))
    return X, y, x_defect, y_defect


def judge(net, before, X, y, result, error, check_result, with_y=True, may_diverge=False):
    """Applies the property: the oracle's verdict on X and y decides between result and error.

    Valid inputs here are moderate (|x| <= 10): only a training step with a
    large lr may overflow, so only sgd_step and fit may answer DivergenceError.
    """
    x_problem = array_problem(X, "X", net, None)
    y_problem = array_problem(y, "y", net, rows_of(X)) if with_y else None
    wrong = {name: problem for name, problem in (("X", x_problem), ("y", y_problem)) if problem}
    if not wrong:
        if may_diverge and isinstance(error, cr.DivergenceError):
            return error
        assert error is None, f"valid arguments refused: {type(error).__name__}: {error}"
        check_result(result)
        return None
    assert error is not None, f"invalid {sorted(wrong)} accepted ({wrong}); returned {result!r}"[:500]
    assert isinstance(error, REFUSALS), f"{type(error).__name__}: {error}"
    if len(wrong) == 1:
        (expected,) = wrong.values()
        assert isinstance(error, expected), f"expected {expected.__name__}, got {type(error).__name__}: {error}"
    else:
        assert isinstance(error, tuple(wrong.values()))
    assert_refusal_names(error, set(wrong))
    assert snapshot(net) == before, "the network's parameters changed although the call failed"
    return error


@FUZZ
@given(data=st.data(), spec=network_specs())
def test_fuzz_predict(data, spec):
    net = build(spec)
    X, _, defect, _ = array_case(data.draw, spec, with_y=False)
    note(f"X defect: {defect}")
    before = snapshot(net)
    result, error = call_and_classify(net.predict, X)
    judge(net, before, X, None, result, error, lambda out: check_predict(net, X, out), with_y=False)
    assert snapshot(net) == before  # predict never writes the parameters


@FUZZ
@given(data=st.data(), spec=network_specs())
def test_fuzz_cost(data, spec):
    net = build(spec)
    X, y, x_defect, y_defect = array_case(data.draw, spec)
    note(f"X defect: {x_defect}, y defect: {y_defect}")
    before = snapshot(net)
    result, error = call_and_classify(net.cost, X, y)
    judge(net, before, X, y, result, error, lambda c: check_cost(net, X, y, c))
    assert snapshot(net) == before


@FUZZ
@given(data=st.data(), spec=network_specs())
def test_fuzz_gradients(data, spec):
    net = build(spec)
    X, y, x_defect, y_defect = array_case(data.draw, spec)
    note(f"X defect: {x_defect}, y defect: {y_defect}")
    before = snapshot(net)
    result, error = call_and_classify(net.gradients, X, y)
    judge(net, before, X, y, result, error, lambda g: check_gradients(net, X, y, g))
    assert snapshot(net) == before  # gradients never step


@FUZZ
@given(data=st.data(), spec=network_specs(), lr=st.floats(1e-4, 10.0))
def test_fuzz_sgd_step(data, spec, lr):
    net = build(spec)
    X, y, x_defect, y_defect = array_case(data.draw, spec)
    note(f"X defect: {x_defect}, y defect: {y_defect}")
    before = snapshot(net)
    old_params = params_of(net)

    def check(returned):
        expected_params, expected_cost = reference.sgd_step(old_params, net.activations, net.loss, X, y, lr)
        assert isinstance(returned, float) and math.isfinite(returned) and returned >= 0
        assert returned == pytest.approx(expected_cost, rel=1e-3 if net.dtype == np.float32 else 1e-9, abs=1e-9)
        for (W, b), (eW, eb) in zip(zip(net.weights, net.biases), expected_params):
            assert np.all(np.isfinite(W)) and np.all(np.isfinite(b))
            if net.dtype == np.float64:
                scale = 1 + lr * (1 + max(float(np.abs(eW).max()), float(np.abs(eb).max())))
                np.testing.assert_allclose(W, eW, rtol=0, atol=1e-9 * scale)
                np.testing.assert_allclose(b, eb, rtol=0, atol=1e-9 * scale)

    result, error = call_and_classify(net.sgd_step, X, y, lr)
    if isinstance(judge(net, before, X, y, result, error, check, may_diverge=True), cr.DivergenceError):
        assert snapshot(net) == before, "sgd_step diverged and changed the parameters"


@FUZZ
@given(data=st.data(), spec=network_specs(), epochs=st.integers(0, 3), batch_size=st.integers(1, 12),
       shuffle=st.booleans(), lr=st.floats(1e-4, 10.0))
def test_fuzz_fit(data, spec, epochs, batch_size, shuffle, lr):
    net = build(spec)
    X, y, x_defect, y_defect = array_case(data.draw, spec)
    note(f"X defect: {x_defect}, y defect: {y_defect}")
    before = snapshot(net)

    def check(history):
        assert isinstance(history, np.ndarray) and history.shape == (epochs,) and history.dtype == np.float64
        assert np.all(np.isfinite(history)) and np.all(history >= 0)
        assert all(np.all(np.isfinite(a)) for a in list(net.weights) + list(net.biases))

    result, error = call_and_classify(net.fit, X, y, epochs=epochs, lr=lr, batch_size=batch_size,
                                      shuffle=shuffle, seed=0)
    if isinstance(judge(net, before, X, y, result, error, check, may_diverge=True), cr.DivergenceError):
        assert all(np.all(np.isfinite(a)) for a in list(net.weights) + list(net.biases))


# -- hyperparameters ------------------------------------------------------------------------

# (value, validity) families. A validity is None (valid) or the expected exception type.
INTEGER_JUNK = st.sampled_from([1.5, 2.0, "3", None, True, False, np.float64(2.0), 1 + 0j, [2], b"2"])


def integer_argument(low, high_valid, huge=True):
    """Integers in and out of range, huge ones, and things that are not integers."""
    valid = st.integers(low, high_valid) | st.builds(np.int64, st.integers(low, min(high_valid, 2**63 - 1)))
    out_of_range = st.integers(-(2**70), low - 1)
    options = [valid, valid, out_of_range, INTEGER_JUNK]
    if huge:
        options.append(st.sampled_from([2**31, 2**32 + 1, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70]))
    return st.one_of(*options)


def integer_problem(value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return TypeError
    return ValueError if int(value) < low else None


REALS = st.one_of(
    st.floats(1e-6, 10.0), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 0.0, -0.0, -1, 1, 1e-50, 1e-320, 5e-324, 1e300, float("nan"), float("inf"),
                     np.float32(0.5), np.float64(0.25), np.int64(1)]),
    st.sampled_from(["0.1", None, True, 0.1 + 0j, [0.1], b"0.1"]),
)


def lr_problem(value, dtype):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return TypeError
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        return ValueError
    with np.errstate(over="ignore"):
        rounded = np.dtype(dtype).type(value)
    if rounded == 0 or not np.isfinite(rounded):  # 0 (a step of nothing) or inf in the network's dtype
        return ValueError
    return None


def tol_problem(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return TypeError
    return None if math.isfinite(float(value)) and float(value) >= 0 else ValueError


TOO_LARGE_TO_COUNT = "valid, or refused with ValueError/MemoryError naming it"


def stop_after_first_epoch(epoch, cost):
    return False


@FUZZ
@given(spec=network_specs(), lr=REALS)
def test_fuzz_sgd_step_learning_rate(spec, lr):
    net = build(spec)
    rng = np.random.default_rng(0)
    X = np.ascontiguousarray(rng.standard_normal((5, spec["layer_sizes"][0])), dtype=spec["dtype"])
    y = np.ascontiguousarray(rng.random((5, spec["layer_sizes"][-1])) < 0.5, dtype=spec["dtype"])
    before = snapshot(net)
    problem = lr_problem(lr, spec["dtype"])
    result, error = call_and_classify(net.sgd_step, X, y, lr)
    if problem is None:
        if isinstance(error, cr.DivergenceError):  # a huge lr may overflow: refused, nothing changed
            assert snapshot(net) == before
            return
        assert error is None, f"valid lr={lr!r} refused: {error!r}"
        assert math.isfinite(result)
        return
    assert isinstance(error, problem), f"lr={lr!r}: expected {problem.__name__}, got {error!r} (returned {result!r})"
    assert_refusal_names(error, {"lr"})
    assert snapshot(net) == before


FIT_ARGUMENTS = ["epochs", "batch_size", "n_iter_no_change", "seed", "lr", "tol", "callback", "shuffle"]


# One argument fuzzed per test, the others valid: hypothesis stops a test at its
# first failure, so one finding per argument rather than one in all.
@pytest.mark.parametrize("argument", FIT_ARGUMENTS)
@FUZZ
@given(spec=network_specs(), data=st.data())
def test_fuzz_fit_hyperparameters(argument, spec, data):
    kwargs = {"epochs": 2, "lr": 0.1, "batch_size": 4, "seed": 0, "tol": None, "n_iter_no_change": 10}
    if argument == "epochs":
        value = data.draw(integer_argument(0, 3))
        problem = integer_problem(value, 0)
        if problem is None and int(value) > 3:
            kwargs["callback"] = stop_after_first_epoch  # a valid huge epochs must run one epoch and stop
            kwargs["tol"] = data.draw(st.sampled_from([None, 1e-3]))
    elif argument == "batch_size":
        value = data.draw(integer_argument(1, 12))
        problem = integer_problem(value, 1)
    elif argument == "n_iter_no_change":
        value = data.draw(integer_argument(1, 5))
        problem = integer_problem(value, 1)
        kwargs["tol"] = data.draw(st.sampled_from([None, 0.0, 1e-3]))
    elif argument == "seed":
        value = data.draw(st.one_of(st.none(), integer_argument(0, 2**64 - 1)))
        problem = None if value is None else integer_problem(value, 0)
        if problem is None and value is not None and int(value) >= 2**64:
            problem = ValueError
    elif argument == "lr":
        value = data.draw(REALS)
        problem = None if value is None else lr_problem(value, spec["dtype"])  # None: fit's default rate
    elif argument == "tol":
        value = data.draw(st.one_of(st.none(), REALS))
        problem = tol_problem(value)
    elif argument == "callback":
        value = data.draw(st.sampled_from([None, 3, "print", [], stop_after_first_epoch, lambda e, c: None,
                                           lambda e, c: True]))
        problem = None if value is None or callable(value) else TypeError
    else:
        value = data.draw(st.sampled_from([True, False, 0, 1, np.bool_(True)]))
        problem = None
    if problem is None and argument in ("epochs", "batch_size", "n_iter_no_change") and int(value) >= 2**63:
        problem = TOO_LARGE_TO_COUNT  # beyond any 64-bit count: running or a clear refusal are both fine
    kwargs[argument] = value
    note(f"fit({argument}={value!r}), expecting {problem}")

    net = build(spec)
    rng = np.random.default_rng(1)
    X = np.ascontiguousarray(rng.standard_normal((7, spec["layer_sizes"][0])), dtype=spec["dtype"])
    y = np.ascontiguousarray(rng.random((7, spec["layer_sizes"][-1])) < 0.5, dtype=spec["dtype"])
    before = snapshot(net)
    result, error = call_and_classify(net.fit, X, y, **kwargs)
    if problem is TOO_LARGE_TO_COUNT and error is not None:
        assert isinstance(error, (ValueError, MemoryError)), f"{argument}={value!r}: {type(error).__name__}: {error}"
        assert_refusal_names(error, {argument})
        assert snapshot(net) == before
        return
    if problem in (None, TOO_LARGE_TO_COUNT):
        if isinstance(error, cr.DivergenceError):
            assert all(np.all(np.isfinite(a)) for a in list(net.weights) + list(net.biases))
            return
        assert error is None, f"valid {argument}={value!r} refused: {type(error).__name__}: {error}"
        assert isinstance(result, np.ndarray) and result.ndim == 1 and np.all(np.isfinite(result))
        if argument == "epochs":
            assert len(result) == min(int(value), 1 if int(value) > 3 else int(value))
        return
    assert isinstance(error, problem), \
        f"{argument}={value!r}: expected {problem.__name__}, got {type(error).__name__}: {error} (returned {result!r})"
    assert_refusal_names(error, {argument})
    assert snapshot(net) == before


@FUZZ
@given(spec=network_specs(), exception=st.sampled_from([ValueError, KeyError, RuntimeError, ZeroDivisionError]),
       at_epoch=st.integers(0, 2))
def test_fuzz_fit_callback_that_raises(spec, exception, at_epoch):
    """An exception from the callback propagates as it is, and leaves a usable network."""
    net = build(spec)
    rng = np.random.default_rng(2)
    X = np.ascontiguousarray(rng.standard_normal((6, spec["layer_sizes"][0])), dtype=spec["dtype"])
    y = np.ascontiguousarray(rng.random((6, spec["layer_sizes"][-1])) < 0.5, dtype=spec["dtype"])
    marker = exception("from the callback")

    def callback(epoch, cost):
        if epoch == at_epoch:
            raise marker

    # A small lr: a deep identity chain can diverge at lr=0.1 within three
    # epochs (rightly refused with DivergenceError), which is not the point here.
    with pytest.raises(exception) as raised:
        net.fit(X, y, epochs=3, lr=1e-3, batch_size=2, seed=0, callback=callback)
    assert raised.value is marker
    assert all(np.all(np.isfinite(a)) for a in list(net.weights) + list(net.biases))
    assert net.fit(X, y, epochs=1, lr=1e-3).shape == (1,)  # the training lock was let go


# -- the constructor --------------------------------------------------------------------------

SIZE_ELEMENTS = st.one_of(
    st.integers(1, 6), st.integers(1, 6), st.integers(1, 6),
    st.integers(-(2**70), 0),
    st.sampled_from([2**40, 2**48, 2**62, 2**63 - 1, 2**63, 2**64, 2**70]),
    st.builds(np.int64, st.integers(1, 6)), st.builds(np.uint8, st.integers(1, 6)),
    st.sampled_from([2.0, 3.5, "3", None, True, np.float64(3.0), [3], 1j]),
)


@st.composite
def layer_sizes_arguments(draw):
    elements = draw(st.lists(SIZE_ELEMENTS, min_size=0, max_size=5))
    container = draw(st.sampled_from(["list", "list", "tuple", "ndarray", "range", "str", "int", "None",
                                      "generator", "2-d"]))
    if container == "tuple":
        return tuple(elements)
    if container == "ndarray":
        ints = [e for e in elements if isinstance(e, int) and not isinstance(e, bool) and 1 <= e <= 6]
        return np.array(ints, dtype=np.int64)
    if container == "range":
        return range(draw(st.integers(0, 4)), draw(st.integers(0, 8)))
    if container == "str":
        return "3, 4, 1"
    if container == "int":
        return 3
    if container == "None":
        return None
    if container == "generator":
        return (n for n in [3, 4, 1])
    if container == "2-d":
        return np.array([[3, 4], [4, 1]])
    return elements


def layer_sizes_problem(sizes):
    """The exception types a refusal of `sizes` may have (one per problem found), or None when valid.

    A list can have several problems (an element of the wrong type, a size < 1,
    fewer than two sizes, a network too large to allocate): whichever the
    library meets first is a fine answer, as long as it names layer_sizes.
    """
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
        return (TypeError,)
    values = list(sizes)
    problems = set()
    for n in values:
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
            problems.add(TypeError)
        elif int(n) < 1:
            problems.add(ValueError)
        elif int(n) >= 2**40:
            problems.add(MemoryError)
    if len(values) < 2:
        problems.add(ValueError)
    if not problems:
        num_params = sum(int(values[l + 1]) * (int(values[l]) + 1) for l in range(len(values) - 1))
        if num_params >= 2**40:
            problems.add(MemoryError)
    return tuple(problems) or None


@FUZZ
@given(sizes=layer_sizes_arguments(), dtype=st.sampled_from(DTYPES))
def test_fuzz_constructor_layer_sizes(sizes, dtype):
    problem = layer_sizes_problem(sizes)
    note(f"layer_sizes={sizes!r}, expecting {problem}")
    result, error = call_and_classify(cr.Network, sizes, activation="tanh", output="sigmoid", loss="bce",
                                      dtype=dtype, seed=0)
    if problem is None:
        assert error is None, f"valid layer_sizes={sizes!r} refused: {type(error).__name__}: {error}"
        values = [int(n) for n in sizes]
        assert result.layer_sizes == tuple(values)
        assert result.n_params == sum(values[l + 1] * (values[l] + 1) for l in range(len(values) - 1))
        assert all(np.all(np.isfinite(w)) for w in result.weights)
        return
    assert isinstance(error, problem), \
        f"layer_sizes={sizes!r}: expected one of {[p.__name__ for p in problem]}, got {type(error).__name__}: {error}"
    assert_refusal_names(error, {"layer_sizes"})


NAME_VALUES = st.one_of(
    st.sampled_from(ACTIVATIONS), st.sampled_from(ACTIVATIONS),
    st.sampled_from(["bce", "mse", "ReLU", "Sigmoid", "softmax", "", " relu", "relu ", "sigmoid\0", "tanh()"]),
    st.text(max_size=8),
    st.sampled_from([None, 3, b"relu", ["relu"], ("tanh",), 1.0]),
)


def name_problems(num_hidden, activation, output, loss):
    """{argument: expected exception} for the activation, output and loss names."""
    wrong = {}
    if isinstance(activation, str):
        if num_hidden and activation not in ACTIVATIONS:
            wrong["activation"] = ValueError
    elif isinstance(activation, (list, tuple)):
        if not all(isinstance(a, str) for a in activation):
            wrong["activation"] = TypeError
        elif len(activation) != num_hidden or any(a not in ACTIVATIONS for a in activation):
            wrong["activation"] = ValueError
    elif isinstance(activation, bytes):  # iterates as integers
        if len(activation):
            wrong["activation"] = TypeError
        elif num_hidden:
            wrong["activation"] = ValueError
    else:
        wrong["activation"] = TypeError
    if not isinstance(output, str):
        wrong["output"] = TypeError
    elif output not in ACTIVATIONS:
        wrong["output"] = ValueError
    if not isinstance(loss, str):
        wrong["loss"] = TypeError
    elif loss not in ("bce", "mse"):
        wrong["loss"] = ValueError
    elif loss == "bce" and output in ACTIVATIONS and output != "sigmoid":
        wrong["loss"] = ValueError  # bce needs a sigmoid output: the message names loss
    return wrong


@pytest.mark.parametrize("fuzzed", ["activation", "output", "loss"])
@FUZZ
@given(num_hidden=st.integers(0, 3), data=st.data())
def test_fuzz_constructor_names(fuzzed, num_hidden, data):
    arguments = {"activation": data.draw(st.lists(st.sampled_from(ACTIVATIONS), min_size=num_hidden,
                                                  max_size=num_hidden)),
                 "output": "sigmoid" if fuzzed == "activation" else data.draw(st.sampled_from(ACTIVATIONS)),
                 "loss": "bce" if fuzzed == "activation" else "mse"}
    arguments[fuzzed] = data.draw(NAME_VALUES if fuzzed != "activation"
                                  else st.one_of(NAME_VALUES, st.lists(NAME_VALUES, max_size=4)))
    activation, output, loss = arguments["activation"], arguments["output"], arguments["loss"]
    wrong = name_problems(num_hidden, activation, output, loss)
    note(f"{arguments}, expecting {wrong}")
    sizes = [3] + [2] * num_hidden + [1]
    result, error = call_and_classify(cr.Network, sizes, activation=activation, output=output, loss=loss, seed=0)
    if not wrong:
        assert error is None, f"valid names refused: {type(error).__name__}: {error}"
        hidden = [activation] * num_hidden if isinstance(activation, str) else list(activation)
        assert result.activations == tuple(hidden) + (output,) and result.loss == loss
        return
    assert error is not None, f"wrong {wrong} accepted: {result!r}"
    assert isinstance(error, tuple(wrong.values())), f"expected one of {wrong}, got {type(error).__name__}: {error}"
    assert_refusal_names(error, set(wrong))


DTYPE_VALUES = st.sampled_from([
    "float32", "float64", "f4", "f8", "<f8", "=f4", np.float32, np.float64, np.dtype("float32"), float, "double",
    "float16", "f2", "int32", "int64", int, bool, np.longdouble, np.complex64, ">f8", ">f4", "Float64", "", "float",
    "float128", "object", 3, [np.float32], "float32 ",
])
SEED_VALUES = st.one_of(st.none(), integer_argument(0, 2**64 - 1))


@FUZZ
@given(dtype=DTYPE_VALUES, seed=SEED_VALUES)
def test_fuzz_constructor_dtype_and_seed(dtype, seed):
    wrong = {}
    try:
        resolved = np.dtype(dtype).newbyteorder("=")  # a byte order names no other dtype: '>f8' is float64
    except (TypeError, ValueError):
        resolved = None
    if resolved is None or resolved not in (np.dtype("float32"), np.dtype("float64")):
        wrong["dtype"] = ValueError
    if seed is not None:
        problem = integer_problem(seed, 0)
        if problem is None and int(seed) >= 2**64:
            problem = ValueError
        if problem:
            wrong["seed"] = problem
    note(f"expecting {wrong}")
    result, error = call_and_classify(cr.Network, [3, 2, 1], dtype=dtype, seed=seed)
    if not wrong:
        assert error is None, f"valid dtype={dtype!r}, seed={seed!r} refused: {type(error).__name__}: {error}"
        assert result.dtype == resolved
        if seed is not None:  # seeded: reproducible
            again = cr.Network([3, 2, 1], dtype=dtype, seed=seed)
            assert snapshot(again) == snapshot(result)
        return
    assert error is not None, f"wrong {wrong} accepted: {result!r}"
    assert isinstance(error, tuple(wrong.values())), f"expected one of {wrong}, got {type(error).__name__}: {error}"
    assert_refusal_names(error, set(wrong))


# -- save and load paths --------------------------------------------------------------------------

# NUL and non-UTF-8 names have tests of their own below (one finding per test).
NAME_CHARACTERS = st.characters(codec="utf-8", exclude_characters="/\0") | st.sampled_from(["é", "模", " ", ".", "-"])


@st.composite
def path_arguments(draw, directory):
    """A path inside `directory` (never outside it), in every type a user might pass, or junk."""
    parts = draw(st.lists(st.text(NAME_CHARACTERS, min_size=1, max_size=12).filter(lambda p: p not in (".", "..")),
                          min_size=1, max_size=3))
    relative = "/".join(parts)
    full = os.path.join(directory, relative)
    kind = draw(st.sampled_from(["str", "str", "bytes", "pathlib", "long", "junk"]))
    if kind == "bytes":
        return os.fsencode(full), full
    if kind == "pathlib":
        return pathlib.Path(full), full
    if kind == "long":  # legal up to NAME_MAX (255 bytes), refused beyond
        long_path = os.path.join(directory, "m" * draw(st.integers(200, 300)))
        return long_path, long_path
    if kind == "junk":
        return draw(st.sampled_from([None, 3, 2.5, object(), ["a"]])), None
    return full, full


def files_under(directory):
    found = set()
    for root, dirs, files in os.walk(os.fsencode(directory)):
        found.update(os.path.join(root, f) for f in files + dirs)
    return found


@FUZZ
@given(data=st.data(), spec=network_specs())
def test_fuzz_save_and_load_paths(data, spec):
    net = build(spec)
    with tempfile.TemporaryDirectory(dir=SCRATCH) as directory:
        path, full = data.draw(path_arguments(directory))
        note(f"path={path!r}")
        result, error = call_and_classify(net.save, path)
        if error is None:
            # Saved at exactly that path, and nowhere else.
            assert full is not None and "\0" not in full, f"save({path!r}) succeeded"
            created = {p for p in files_under(directory) if os.path.isfile(p)}
            assert created == {os.fsencode(full)}, f"save({path!r}) wrote {created}"
            loaded = cr.Network.load(path)
            assert snapshot(loaded) == snapshot(net) and loaded.activations == net.activations
            return
        if isinstance(error, OSError):
            assert error.errno is not None, f"an OSError without errno: {error!r}"
        else:
            assert isinstance(error, (TypeError, ValueError)), f"{type(error).__name__}: {error}"
            assert_refusal_names(error, {"path"})
        assert files_under(directory) == set(), f"a failed save({path!r}) left {files_under(directory)}"


@FUZZ
@given(suffix=st.text(NAME_CHARACTERS, min_size=1, max_size=8), spec=network_specs())
def test_fuzz_load_never_reads_another_file_than_named(suffix, spec):
    """A path with a NUL byte names no file: it must not load the file named by its prefix."""
    net = build(spec)
    with tempfile.TemporaryDirectory(dir=SCRATCH) as directory:
        base = os.path.join(directory, "model.crnn")
        net.save(base)
        path = base + "\0" + suffix
        result, error = call_and_classify(cr.Network.load, path)
        assert error is not None, f"load({path!r}) loaded {base!r} instead"
        assert isinstance(error, (ValueError, TypeError, OSError))
        if not isinstance(error, OSError):
            assert_refusal_names(error, {"path"})


@FUZZ
@given(prefix=st.text(NAME_CHARACTERS, min_size=1, max_size=8), suffix=st.text(NAME_CHARACTERS, max_size=8),
       spec=network_specs())
def test_fuzz_save_to_a_path_with_a_nul_byte_is_refused(prefix, suffix, spec):
    """A NUL byte cannot be in a file name: save must refuse it, not write to the name before it."""
    net = build(spec)
    with tempfile.TemporaryDirectory(dir=SCRATCH) as directory:
        path = os.path.join(directory, prefix + "\0" + suffix)
        result, error = call_and_classify(net.save, path)
        written = files_under(directory)
        assert error is not None, f"save({path!r}) succeeded and wrote {written}"
        assert isinstance(error, (ValueError, TypeError)), f"{type(error).__name__}: {error}"
        assert_refusal_names(error, {"path"})
        assert written == set()


@FUZZ
@given(name=st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b"\0" not in b
                                                       and b not in (b".", b"..")),
       spec=network_specs())
def test_fuzz_save_and_load_any_posix_file_name(name, spec):
    """Any bytes but '/' and NUL make a legal POSIX file name, UTF-8 or not: save and load take it."""
    net = build(spec)
    with tempfile.TemporaryDirectory(dir=SCRATCH) as directory:
        path = os.fsencode(directory) + b"/" + name
        result, error = call_and_classify(net.save, path)
        if error is not None:
            assert isinstance(error, OSError), f"save({path!r}) refused a legal name: {type(error).__name__}: {error}"
            assert_refusal_names(error, {"path"})
            return
        assert files_under(directory) == {path}
        assert snapshot(cr.Network.load(path)) == snapshot(net)
