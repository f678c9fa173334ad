"""Numerics at the edges: no NaN (or inf) escapes silently.

Every call on finite inputs of any magnitude either returns finite values or
raises chainrule.DivergenceError (a FloatingPointError) that says so, with the
parameters as they were before the offending step; sigmoid and the BCE cost are
finite for any finite logit, however saturated (the cost is taken from the
logits, never as log(sigmoid)). Cases: inputs of magnitude 1e30 (and -1e30,
and mixed), all-zero inputs, all-same targets, learning rates large enough to
diverge, saturating weights written through the views, and, in float32 and
float64 alike, logits up to the largest finite value.

Non-finite parameters (inf or NaN written through net.weights / net.biases,
which the views allow) are a decision recorded here: no call may turn them
into NaN results silently. predict, cost and gradients either return finite
values or raise (ValueError or FloatingPointError) naming the parameters;
sgd_step and fit raise and leave the parameters bitwise as they were, without
claiming that the parameters hold "finite" values; save and load keep them
bit for bit (a file is a faithful copy).
"""

import math
import re

import numpy as np
import pytest

import chainrule as cr
import reference

DTYPES = ["float32", "float64"]
HIDDEN = ["sigmoid", "tanh", "relu", "identity"]
HEADS = {"sigmoid-bce": ("sigmoid", "bce"), "identity-mse": ("identity", "mse"), "tanh-mse": ("tanh", "mse"),
         "relu-mse": ("relu", "mse")}


def make_network(hidden, head, dtype, seed=0, sizes=(6, 8, 5, 2)):
    output, loss = HEADS[head]
    return cr.Network(list(sizes), activation=hidden, output=output, loss=loss, dtype=dtype, seed=seed)


def snapshot(net):
    return [a.tobytes() for a in list(net.weights) + list(net.biases)]


def params_finite(net):
    return all(np.all(np.isfinite(a)) for a in list(net.weights) + list(net.biases))


def targets_for(net, num_records, kind="mixed"):
    rng = np.random.default_rng(1)
    shape = (num_records, net.layer_sizes[-1])
    if net.loss == "bce":
        values = {"mixed": (rng.random(shape) < 0.5), "zeros": np.zeros(shape), "ones": np.ones(shape),
                  "half": np.full(shape, 0.5)}[kind]
    else:
        values = {"mixed": rng.standard_normal(shape), "zeros": np.zeros(shape), "ones": np.ones(shape),
                  "half": np.full(shape, 5.0)}[kind]
    return np.ascontiguousarray(values, dtype=net.dtype)


def huge_inputs(num_inputs, dtype, pattern, magnitude=1e30):
    X = np.full((8, num_inputs), magnitude)
    if pattern == "negative":
        X = -X
    elif pattern == "mixed":
        X[::2, ::2] *= -1
        X[1::3] *= 0.5
    return np.ascontiguousarray(X, dtype=dtype)


def assert_finite_or_divergence(call, net, restore_check):
    """Runs call(); a result must be finite, an error a DivergenceError after which restore_check() holds."""
    before = snapshot(net)
    try:
        result = call()
    except cr.DivergenceError as error:
        assert re.search(r"diverge|non-finite|not finite|overflow", str(error)), str(error)
        restore_check(before)
        return None
    values = [result] if isinstance(result, float) else (
        [a for pair in result for a in pair] if isinstance(result, list) else [result])
    for value in values:
        assert np.all(np.isfinite(value)), f"a non-finite result escaped silently: {value!r}"[:400]
    return result


def finite_or_refused(call):
    """call()'s result, which must be finite, or None when it raised a FloatingPointError (DivergenceError).

    The rule for predict and cost at the edges: when the forward pass overflows
    (finite inputs, finite but huge parameters), say so; never hand back inf or NaN.
    """
    try:
        result = call()
    except FloatingPointError as error:
        assert str(error), "an empty message"
        return None
    assert np.all(np.isfinite(result)), f"a non-finite result escaped silently: {result!r}"[:400]
    return result


# -- inputs of magnitude 1e30 -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("pattern", ["positive", "negative", "mixed"])
def test_inputs_of_magnitude_1e30_predict_and_cost_finite(pattern, hidden, head, dtype):
    net = make_network(hidden, head, dtype)
    X = huge_inputs(6, dtype, pattern)
    y = targets_for(net, len(X))
    out = net.predict(X)
    assert np.all(np.isfinite(out)), f"predict returned {out[~np.isfinite(out)][:4]} for finite inputs"
    low, high = {"sigmoid": (0, 1), "tanh": (-1, 1), "relu": (0, np.inf)}.get(net.activations[-1], (-np.inf, np.inf))
    assert np.all(out >= low) and np.all(out <= high)
    # The float64 reference of the same parameters, where it is finite, agrees.
    expected = reference.predict([(w.copy(), b.copy()) for w, b in zip(net.weights, net.biases)], net.activations, X)
    if dtype == "float64":
        np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-300)
    cost = net.cost(X, y)
    assert math.isfinite(cost) and cost >= 0, f"cost {cost} for finite inputs"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("hidden", HIDDEN)
def test_inputs_of_magnitude_1e30_gradients_are_finite_or_refused(hidden, head, dtype):
    # The true gradient can exceed float32's range (an identity layer on 1e30
    # inputs gives dW ~ 1e60); then sgd_step refuses the step with a
    # DivergenceError. gradients() must not hand back inf or NaN silently either.
    net = make_network(hidden, head, dtype)
    X = huge_inputs(6, dtype, "mixed")
    y = targets_for(net, len(X))
    assert_finite_or_divergence(lambda: net.gradients(X, y), net,
                                lambda before: None)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("pattern", ["positive", "mixed"])
def test_inputs_of_magnitude_1e30_train_or_report_divergence(pattern, hidden, head, dtype):
    net = make_network(hidden, head, dtype)
    X = huge_inputs(6, dtype, pattern)
    y = targets_for(net, len(X))

    def unchanged(before):
        assert snapshot(net) == before, "sgd_step diverged and changed the parameters"

    assert_finite_or_divergence(lambda: net.sgd_step(X, y, 0.1), net, unchanged)
    assert params_finite(net)

    def finite_and_usable(before):
        assert params_finite(net), "fit diverged and left non-finite parameters"
        # The step that diverged overflowed at these very parameters on these
        # inputs, so predict may have to refuse them too; but not with NaN.
        finite_or_refused(lambda: net.predict(X))

    history = assert_finite_or_divergence(lambda: net.fit(X, y, epochs=3, lr=0.1, batch_size=3, seed=0), net,
                                          finite_and_usable)
    assert params_finite(net)
    if history is not None:
        assert np.all(history >= 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["predict", "cost"])
def test_a_forward_pass_that_overflows_is_reported_not_returned_as_nan(method, dtype):
    # Finite inputs, finite parameters: two identity layers whose products
    # exceed the dtype's range, with terms of both signs, so the sum is
    # inf - inf = NaN. predict and cost must refuse (DivergenceError is a
    # FloatingPointError) or return finite values.
    big = float(np.sqrt(np.finfo(dtype).max))
    net = cr.Network([2, 2, 1], activation="identity", output="identity", loss="mse", dtype=dtype, seed=0)
    net.weights[0][...] = [[big, big], [big, -big]]
    net.weights[1][...] = [[big, -big]]
    X = np.ascontiguousarray([[4.0, 4.0], [4.0, -4.0], [1.0, 0.5]], dtype=dtype)
    y = np.zeros((3, 1), dtype=dtype)
    assert params_finite(net) and np.all(np.isfinite(X))
    call = {"predict": lambda: net.predict(X), "cost": lambda: net.cost(X, y)}[method]
    finite_or_refused(call)


# -- all-zero inputs, all-same targets ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("hidden", HIDDEN)
def test_all_zero_inputs(hidden, head, dtype):
    net = make_network(hidden, head, dtype)
    for b in net.biases:
        b[...] = np.linspace(-0.5, 0.5, b.size)
    X = np.zeros((7, 6), dtype=dtype)
    y = targets_for(net, len(X))
    out = net.predict(X)
    assert np.all(np.isfinite(out)) and np.all(out == out[0]), "records of zeros must all predict the same"
    expected = reference.predict([(w, b) for w, b in zip(net.weights, net.biases)], net.activations, X[:1])
    np.testing.assert_allclose(out[0], expected[0], rtol=1e-5 if dtype == "float32" else 1e-12)
    grads = net.gradients(X, y)
    assert not np.any(grads[0][0]), "dW_1 = dZ_1^T X must be exactly 0 for X = 0"
    assert all(np.all(np.isfinite(a)) for pair in grads for a in pair)
    history = net.fit(X, y, epochs=5, lr=0.1, batch_size=3, seed=0)
    assert np.all(np.isfinite(history)) and params_finite(net)
    assert not np.any(net.weights[0] - make_network(hidden, head, dtype).weights[0]), \
        "zero inputs cannot move the first layer's weights"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head", ["sigmoid-bce", "identity-mse", "tanh-mse"])
@pytest.mark.parametrize("kind", ["zeros", "ones", "half"])
def test_all_same_targets_are_learned_without_nan(kind, head, dtype):
    # All-0 or all-1 BCE targets drive the output sigmoid into saturation,
    # where a(1 - a) and log(a) or log(1 - a) underflow: the cost must stay
    # finite and keep falling.
    net = make_network("tanh", head, dtype, sizes=(4, 6, 1))
    rng = np.random.default_rng(3)
    X = np.ascontiguousarray(rng.standard_normal((40, 4)), dtype=dtype)
    y = targets_for(net, len(X), kind)
    if head == "tanh-mse" and kind == "half":
        y[...] = 0.5  # tanh cannot reach 5
    error_before = np.abs(net.predict(X) - y).mean()
    history = net.fit(X, y, epochs=300, lr=1.0 if head == "sigmoid-bce" else 0.1, batch_size=8, seed=0)
    assert np.all(np.isfinite(history)) and np.all(history >= 0)
    assert history[-1] < history[0]
    assert params_finite(net)
    out = net.predict(X)
    assert np.all(np.isfinite(out))
    assert np.abs(out - y).mean() < error_before / 2, "the constant target was not learned"
    cost = net.cost(X, y)
    assert math.isfinite(cost) and cost >= 0


# -- learning rates large enough to diverge ------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("hidden", HIDDEN)
def test_huge_learning_rates_never_leave_nan_behind(hidden, head, dtype):
    rng = np.random.default_rng(4)
    X = np.ascontiguousarray(rng.standard_normal((32, 6)) * 3, dtype=dtype)
    for lr in [1e2, 1e6, 1e12, 1e20, float(np.finfo(dtype).max) / 10]:
        net = make_network(hidden, head, dtype, seed=2)
        y = targets_for(net, len(X))
        try:
            history = net.fit(X, y, epochs=20, lr=lr, batch_size=4, seed=0)
        except cr.DivergenceError as error:
            assert "lr" in str(error), f"the divergence error does not point at lr: {error}"
            history = None
        assert params_finite(net), f"lr={lr:g} left non-finite parameters"
        if history is not None:
            assert np.all(np.isfinite(history)), f"lr={lr:g}: history {history}"
        # The parameters may now be so large that the forward pass overflows:
        # then predict and cost must say so rather than return inf or NaN.
        finite_or_refused(lambda: net.predict(X))
        finite_or_refused(lambda: net.cost(X, y))
        finite_or_refused(lambda: net.fit(X, y, epochs=1, lr=1e-3, seed=0))


# -- saturated sigmoid and BCE --------------------------------------------------------------------------


def bce_from_logits(z, y):
    z, y = np.asarray(z, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_bce_are_finite_for_every_finite_logit(dtype):
    # A 1-1 logistic unit with weight 1 and bias 0: the logit is the input.
    # Per record (one record per call, so no sum can overflow): the prediction
    # is sigmoid(z) in [0, 1], monotone in z, and the cost is the BCE of the
    # logit, finite for every finite z, where MiniDNN's log(sigmoid) is -inf.
    info = np.finfo(dtype)
    magnitudes = np.concatenate([[0.0, info.smallest_subnormal, info.tiny, 1e-8, 0.5, 1, 10, 16.6, 17, 36.7, 40, 89,
                                  100, 710, 800, 1e4, 1e30],
                                 [10.0**k for k in range(31, int(np.log10(info.max)) + 1, 7)], [float(info.max)]])
    z = np.unique(np.concatenate([-magnitudes, magnitudes])).astype(dtype)
    net = cr.Network([1, 1], output="sigmoid", loss="bce", dtype=dtype, seed=0)
    net.weights[0][...] = 1
    net.biases[0][...] = 0
    X = np.ascontiguousarray(z[:, None])
    a = net.predict(X)[:, 0]
    assert np.all(np.isfinite(a)) and np.all((a >= 0) & (a <= 1))
    assert np.all(np.diff(a) >= 0), "sigmoid must be monotone"
    # (below the smallest normal number the dtype keeps fewer digits: an absolute bound there)
    np.testing.assert_allclose(a, reference.sigmoid(z.astype(np.float64)), rtol=4 * info.eps, atol=float(info.tiny))
    for target in (0.0, 0.5, 1.0):
        for i in range(len(z)):
            y = np.full((1, 1), target, dtype=dtype)
            cost = net.cost(X[i:i + 1], y)
            expected = float(bce_from_logits(z[i], target))
            assert math.isfinite(cost) and cost >= 0, f"BCE({z[i]}, {target}) = {cost}"
            assert cost == pytest.approx(expected, rel=1e-6, abs=1e-30), (z[i], target)
            (dW, db), = net.gradients(X[i:i + 1], y)
            assert np.all(np.isfinite(dW)) and np.all(np.isfinite(db)), (z[i], target, dW, db)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [1e30, -1e30, 1e4])
def test_saturating_weights_written_through_the_views_keep_everything_finite(value, dtype):
    # Hidden sigmoids saturate to exactly 0 or 1, the output logit is about
    # +-1e30: predictions are exactly 0 or 1, and the BCE is huge but finite.
    net = cr.Network([3, 4, 2], activation="sigmoid", output="sigmoid", loss="bce", dtype=dtype, seed=0)
    net.weights[0][...] = value * np.array([[1, -1, 1], [-1, 1, 1], [1, 1, -1], [-1, -1, -1]])
    net.weights[1][...] = value * np.array([[1, -1, 1, -1], [-1, 1, -1, 1]])
    rng = np.random.default_rng(5)
    X = np.ascontiguousarray(rng.standard_normal((16, 3)), dtype=dtype)
    out = net.predict(X)
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))
    for y in (np.round(out), 1 - np.round(out), np.full_like(out, 0.5)):
        y = np.ascontiguousarray(y, dtype=dtype)
        cost = net.cost(X, y)
        assert math.isfinite(cost) and cost >= 0, f"cost {cost} with saturated outputs"
        expected = reference.cost([(w, b) for w, b in zip(net.weights, net.biases)], net.activations, "bce", X, y)
        assert cost == pytest.approx(expected, rel=1e-4)
        assert all(np.all(np.isfinite(a)) for pair in net.gradients(X, y) for a in pair)

        def unchanged(before):
            assert snapshot(net) == before

        assert_finite_or_divergence(lambda: net.sgd_step(X, y, 0.1), net, unchanged)
        assert params_finite(net)


# -- non-finite parameters written through the views ------------------------------------------------------

POISONS = {"nan-weight": ("weights", np.nan), "inf-weight": ("weights", np.inf), "inf-bias": ("biases", np.inf)}


def poisoned_network(poison, dtype, layer):
    net = cr.Network([3, 4, 2], activation="tanh", output="sigmoid", loss="bce", dtype=dtype, seed=0)
    where, value = POISONS[poison]
    getattr(net, where)[layer].flat[0] = value
    return net


def data_for(dtype):
    rng = np.random.default_rng(6)
    X = np.ascontiguousarray(rng.standard_normal((5, 3)), dtype=dtype)
    y = np.ascontiguousarray(rng.random((5, 2)) < 0.5, dtype=dtype)
    return X, y


def assert_finite_or_refused_naming_the_parameters(call):
    try:
        result = call()
    except (ValueError, FloatingPointError) as error:
        assert re.search(r"param|weight|bias|non-finite|not finite", str(error)), str(error)
        return
    values = [result] if isinstance(result, float) else (
        [a for pair in result for a in pair] if isinstance(result, list) else [result])
    for value in values:
        assert np.all(np.isfinite(value)), f"non-finite parameters turned into a silent {value!r}"[:300]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("poison", list(POISONS))
@pytest.mark.parametrize("method", ["predict", "cost", "gradients"])
def test_non_finite_parameters_never_give_silent_nan(method, poison, layer, dtype):
    net = poisoned_network(poison, dtype, layer)
    X, y = data_for(dtype)
    before = snapshot(net)
    call = {"predict": lambda: net.predict(X), "cost": lambda: net.cost(X, y),
            "gradients": lambda: net.gradients(X, y)}[method]
    assert_finite_or_refused_naming_the_parameters(call)
    assert snapshot(net) == before


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("poison", list(POISONS))
@pytest.mark.parametrize("method", ["sgd_step", "fit"])
def test_training_with_non_finite_parameters_is_refused_truthfully(method, poison, layer, dtype):
    net = poisoned_network(poison, dtype, layer)
    X, y = data_for(dtype)
    before = snapshot(net)
    with pytest.raises((ValueError, FloatingPointError)) as raised:
        if method == "fit":
            net.fit(X, y, epochs=2, lr=0.1, batch_size=2, seed=0)
        else:
            net.sgd_step(X, y, 0.1)
    assert snapshot(net) == before, "the parameters changed although training was refused"
    message = str(raised.value)
    # The parameters were not finite before the call: an error that says they
    # hold their "last finite values" sends the user looking in the wrong place.
    assert not re.search(r"last finite values", message), f"the message claims finite parameters: {message}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("poison", list(POISONS))
def test_non_finite_parameters_survive_save_and_load_bit_for_bit(tmp_path, poison, dtype):
    net = poisoned_network(poison, dtype, 1)
    try:
        net.save(tmp_path / "model.crnn")
    except (ValueError, FloatingPointError) as error:  # refusing to save them is a choice too
        assert re.search(r"param|weight|bias|non-finite|not finite", str(error))
        return
    assert snapshot(cr.Network.load(tmp_path / "model.crnn")) == snapshot(net)
