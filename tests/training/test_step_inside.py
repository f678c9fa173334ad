"""SGD's step taken inside the backward pass (docs/math.md, "The step inside the backward pass").

On dense batches of a network with a GEMM-sized layer, SGD (plain, or with
momentum but not Nesterov's; no weight decay or L2 penalty) steps each layer
as soon as its backward is done, once a bound has shown that no value of the
step can overflow; a layer whose dW is a GEMM takes its step in that GEMM
(W += -lr dZ^T A, or the velocity's update). What must hold: plain SGD's new
values are W - lr dW with the same dW, rounded as one fused multiply-add or
as a product then a difference (the GEMM library picks, by kernel and
shape); momentum's steps are its rule's within rounding; every other
optimizer (Adam, Nesterov, weight decay, the L2 penalty) keeps the bits of
the step taken apart; sgd_step and a one-batch fit take the same step; a
step the bound cannot vouch for is checked value by value as before, and one
that would overflow changes nothing, the optimizer's state included.
"""

from fractions import Fraction

import numpy as np
import pytest

import chainrule as cr

DTYPES = ["float32", "float64"]
# 64 inputs, 96 and 48 hidden units, 3 outputs: dW of the first two layers
# (96 x 64, 48 x 96 over 24 records) are GEMMs; the output layer's is not.
SIZES = [64, 96, 48, 3]
RECORDS = 24


def make_case(dtype, hidden="tanh", seed=0):
    rng = np.random.default_rng(seed)
    X = np.ascontiguousarray(rng.standard_normal((RECORDS, SIZES[0])), dtype=dtype)
    Y = np.ascontiguousarray(rng.standard_normal((RECORDS, SIZES[-1])), dtype=dtype)
    net = cr.Network(SIZES, activation=hidden, output="identity", loss="mse", dtype=dtype, seed=seed + 1)
    return net, X, Y


def parameters(net):
    return [np.array(a) for pair in zip(net.weights, net.biases) for a in pair]


def rounded_once(exact, dtype):
    """The dtype value nearest the Fraction `exact` (ties to even): one rounding."""
    guess = np.array(float(exact), dtype=dtype)
    candidates = [np.nextafter(guess, -np.inf, dtype=dtype), guess, np.nextafter(guess, np.inf, dtype=dtype)]
    distance = [abs(Fraction(float(c)) - exact) for c in candidates]
    best = min(distance)
    nearest = [c for c, d in zip(candidates, distance) if d == best]
    if len(nearest) > 1:  # a tie: the even significand
        nearest = [c for c in nearest if int(np.array(c).view(np.uint32 if dtype == "float32" else np.uint64)) % 2 == 0]
    return nearest[0]


def assert_each_is_one_sgd_rounding(new, old, grad, lr, dtype):
    """Every new value is fl(old - lr grad) (a fused multiply-add) or fl(old - fl(lr grad))."""
    lr_t = np.array(lr, dtype=dtype)
    two_roundings = old - lr_t * grad
    for index in np.flatnonzero(new.ravel() != two_roundings.ravel()):
        p, g = old.ravel()[index], grad.ravel()[index]
        fused = rounded_once(Fraction(float(p)) - Fraction(float(lr_t)) * Fraction(float(g)), dtype)
        assert new.ravel()[index] == fused, (index, new.ravel()[index], two_roundings.ravel()[index], fused)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", ["tanh", "relu", "sigmoid"])
def test_each_new_value_is_w_minus_lr_dw_rounded_once_or_twice(dtype, hidden):
    net, X, Y = make_case(dtype, hidden)
    lr = 0.05
    before = parameters(net)
    grads = [a for pair in net.gradients(X, Y) for a in pair]
    net.fit(X, Y, epochs=1, lr=lr, batch_size=RECORDS, shuffle=False)
    after = parameters(net)
    for new, old, grad in zip(after, before, grads):
        assert np.any(new != old)  # every layer stepped
        assert_each_is_one_sgd_rounding(new, old, grad, lr, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_step_takes_the_step_of_a_one_batch_fit(dtype):
    a, X, Y = make_case(dtype, seed=3)
    b = a.copy()
    cost = a.sgd_step(X, Y, lr=0.1)
    history = b.fit(X, Y, epochs=1, lr=0.1, batch_size=RECORDS, shuffle=False)
    assert cost == pytest.approx(history[0], rel=1e-6 if dtype == "float32" else 1e-14)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(parameters(a), parameters(b)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_step_the_bound_cannot_vouch_for_is_checked_and_taken_as_before(dtype):
    # A weight of half the largest float leaves no room for the bound (a
    # quarter of it), but the step itself stays finite: it is taken, each value
    # checked first as sgd_update does, and rounded as sgd_update rounds.
    net, X, Y = make_case(dtype, seed=5)
    huge = np.finfo(dtype).max / 2
    net.weights[0][0, 0] = huge
    net.weights[0][1, :] = 0.0  # unit 1 then sees only its bias: its values stay moderate
    X[:, 0] = 0.0  # the huge weight meets zeros: the forward pass stays finite
    before = parameters(net)
    grads = [a for pair in net.gradients(X, Y) for a in pair]
    net.fit(X, Y, epochs=1, lr=0.01, batch_size=RECORDS, shuffle=False)
    after = parameters(net)
    assert after[0][0, 0] == huge  # its gradient is 0: x_0 is 0 in every record
    for new, old, grad in zip(after, before, grads):
        assert np.all(np.isfinite(new))
        assert_each_is_one_sgd_rounding(new, old, grad, 0.01, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("call", ["fit", "sgd_step"])
def test_a_step_that_would_overflow_changes_nothing(dtype, call):
    net, X, Y = make_case(dtype, seed=7)
    Y *= 1e4  # gradients in the hundreds or more: lr times them overflows
    before = [a.tobytes() for a in parameters(net)]
    lr = float(np.finfo(dtype).max) / 16
    with pytest.raises(cr.DivergenceError, match="lr"):
        if call == "fit":
            net.fit(X, Y, epochs=1, lr=lr, batch_size=RECORDS, shuffle=False)
        else:
            net.sgd_step(X, Y, lr=lr)
    assert [a.tobytes() for a in parameters(net)] == before


@pytest.mark.parametrize("dtype", DTYPES)
def test_many_steps_train_with_the_bound_kept_across_an_epoch(dtype):
    # 40 epochs of 8 batches: the bound grows with each step and is measured
    # again at each epoch; the fit learns (the cost falls) and matches, within
    # rounding, the same steps taken one batch at a time through sgd_step.
    net, X, Y = make_case(dtype, seed=9)
    X = np.ascontiguousarray(np.tile(X, (8, 1)))
    Y = np.ascontiguousarray(np.tile(Y, (8, 1)))
    replay = net.copy()
    history = net.fit(X, Y, epochs=40, lr=0.01, batch_size=RECORDS, shuffle=False)
    assert history[-1] < 0.5 * history[0]
    for _ in range(40):
        for start in range(0, len(X), RECORDS):
            replay.sgd_step(X[start:start + RECORDS], Y[start:start + RECORDS], lr=0.01)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(parameters(net), parameters(replay)))


def momentum_reference(net, X, Y, lr, mu, form, steps):
    """The momentum rule of docs/math.md, step by step, from the gradients (numpy, the network's dtype)."""
    params = parameters(net)
    velocity = [np.zeros_like(a) for a in params]
    copy = net.copy()
    for step in range(steps):
        for target, value in zip(list(copy.weights) + list(copy.biases), params[0::2] + params[1::2]):
            target[...] = value
        grads = [a for pair in copy.gradients(X, Y) for a in pair]
        for i, g in enumerate(grads):
            if form == "torch":
                velocity[i] = g if step == 0 else mu * velocity[i] + g
                params[i] = params[i] - lr * velocity[i]
            else:
                velocity[i] = mu * velocity[i] - lr * g
                params[i] = params[i] + velocity[i]
    return params, velocity


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", ["torch", "sklearn"])
def test_momentum_steps_inside_follow_the_rule(dtype, form):
    net, X, Y = make_case(dtype, seed=11)
    lr, mu, steps = 0.05, 0.9, 6
    expected, velocity = momentum_reference(net, X, Y, lr, mu, form, steps)
    opt = cr.optim.SGD(lr=lr, momentum=mu, form=form)
    net.fit(X, Y, epochs=steps, batch_size=RECORDS, shuffle=False, optimizer=opt)
    slot = opt.state_dict()["state"]["slots"][0]
    tolerance = 2e-5 if dtype == "float32" else 1e-12
    for got, want in zip(parameters(net), expected):
        assert np.abs(got - want).max() <= tolerance * np.abs(want).max()
    offsets = np.cumsum([0] + [a.size for a in expected])
    for i, want in enumerate(velocity):
        got = slot[offsets[i]:offsets[i + 1]].reshape(want.shape)
        assert np.abs(got - want).max() <= tolerance * np.abs(want).max()


@pytest.mark.parametrize("dtype", DTYPES)
def test_momentums_first_step_is_plain_sgds(dtype):
    # torch's velocity starts as the gradient itself: the first step is W - lr dW, rounded once or twice.
    net, X, Y = make_case(dtype, seed=13)
    before = parameters(net)
    grads = [a for pair in net.gradients(X, Y) for a in pair]
    net.fit(X, Y, epochs=1, batch_size=RECORDS, shuffle=False, optimizer=cr.optim.SGD(lr=0.05, momentum=0.9))
    for new, old, grad in zip(parameters(net), before, grads):
        assert_each_is_one_sgd_rounding(new, old, grad, 0.05, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", ["torch", "sklearn"])
def test_a_momentum_step_that_would_overflow_changes_nothing_nor_the_velocity(dtype, form):
    net, X, Y = make_case(dtype, seed=15)
    opt = cr.optim.SGD(lr=0.01, momentum=0.9, form=form)
    net.fit(X, Y, epochs=2, batch_size=RECORDS, shuffle=False, optimizer=opt)  # a velocity to keep
    state = opt.state_dict()["state"]
    before = [a.tobytes() for a in parameters(net)]
    Y = Y * 1e4
    opt.lr = float(np.finfo(dtype).max) / 16
    with pytest.raises(cr.DivergenceError, match="lr"):
        net.fit(X, Y, epochs=1, batch_size=RECORDS, shuffle=False, optimizer=opt)
    assert [a.tobytes() for a in parameters(net)] == before
    after = opt.state_dict()["state"]
    assert after["steps"] == state["steps"]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(after["slots"], state["slots"]))


class OneProcess:
    """A reducer of one process: its sums return their input (as chainrule.distributed's over COMM_SELF)."""

    rank, size = 0, 1

    def __call__(self, values):
        pass


def apart(net, X, Y, optimizer, epochs, alpha=0.0):
    """The same steps taken apart: fit's distributed path, on one process, takes the whole gradient, then
    optimizer_update, never the step inside (docs/math.md, "Distributed training")."""
    return net._fit(X, Y, epochs, None, RECORDS, False, 0, None, 10, None, False, optimizer, None, alpha, None,
                    None, reducer=OneProcess())


OPTIMIZERS = {
    "adam": lambda: cr.optim.Adam(lr=1e-3),
    "adam-sklearn": lambda: cr.optim.Adam(lr=1e-3, form="sklearn"),
    "amsgrad-wd": lambda: cr.optim.Adam(lr=1e-3, amsgrad=True, weight_decay=0.01),
    "adamw": lambda: cr.optim.AdamW(lr=1e-3, weight_decay=0.1),
    "nesterov": lambda: cr.optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
    "sgd-wd": lambda: cr.optim.SGD(lr=0.05, weight_decay=0.01),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_other_optimizers_keep_the_bits_of_the_step_taken_apart(dtype, name, alpha):
    net, X, Y = make_case(dtype, seed=17)
    other = net.copy()
    a, b = OPTIMIZERS[name](), OPTIMIZERS[name]()
    history = net.fit(X, Y, epochs=5, batch_size=RECORDS, shuffle=False, optimizer=a, alpha=alpha)
    expected = apart(other, X, Y, b, 5, alpha)
    assert np.array(history).tobytes() == np.array(expected).tobytes()
    assert all(x.tobytes() == y.tobytes() for x, y in zip(parameters(net), parameters(other)))
    sa, sb = a.state_dict()["state"], b.state_dict()["state"]
    assert sa["steps"] == sb["steps"] == 5
    assert all(x.tobytes() == y.tobytes() for x, y in zip(sa["slots"], sb["slots"]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_an_adam_or_other_step_that_would_overflow_changes_nothing(dtype, name):
    net, X, Y = make_case(dtype, seed=19)
    opt = OPTIMIZERS[name]()
    net.fit(X, Y, epochs=2, batch_size=RECORDS, shuffle=False, optimizer=opt)
    state = opt.state_dict()["state"]
    before = [a.tobytes() for a in parameters(net)]
    opt.lr = float(np.finfo(dtype).max)  # Adam's step is about lr / (1 - beta1^t) in size: too large
    with pytest.raises(cr.DivergenceError, match="lr"):
        net.fit(X, Y * 1e4, epochs=1, batch_size=RECORDS, shuffle=False, optimizer=opt)
    assert [a.tobytes() for a in parameters(net)] == before
    after = opt.state_dict()["state"]
    assert after["steps"] == state["steps"]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(after["slots"], state["slots"]))
