"""Optimizers, schedules and the L2 penalty (chainrule.optim; docs/math.md, "Optimizers").

Exactness against torch.optim (torch form) and against scikit-learn's
optimizer classes driven by chainrule's own gradients (sklearn form): same
initial parameters, records in order, 3 epochs, float64, parameters within
1e-10 relative. Then: resuming a run, the same bits at any thread count,
bad settings refused with the network and the optimizer unchanged.
"""

import pickle

import numpy as np
import pytest

import chainrule as cr
import reference

SIZES = [6, 9, 5, 2]
RECORDS, BATCH, EPOCHS = 40, 8, 3


def make_run(make_data, dtype="float64", loss="bce", seed=3):
    output = "sigmoid" if loss == "bce" else "identity"
    net = cr.Network(SIZES, activation="tanh", output=output, loss=loss, dtype=dtype, seed=seed)
    X, Y = make_data(RECORDS, SIZES[0], SIZES[-1], loss, dtype=dtype, seed=seed + 1)
    return net, X, Y


def params_of(net):
    return [np.array(a) for pair in zip(net.weights, net.biases) for a in pair]


def assert_close(got, expected, tolerance):
    for a, b in zip(got, expected):
        error = reference.relative_error(a, b)
        assert error < tolerance, f"relative error {error:.3g}"


# -- against torch.optim -----------------------------------------------------------------------------------------

torch = pytest.importorskip("torch")
F = torch.nn.functional

TORCH_CASES = {
    "sgd-momentum": (lambda: cr.optim.SGD(lr=0.05, momentum=0.9),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    "sgd-nesterov": (lambda: cr.optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    "sgd-momentum-decay": (lambda: cr.optim.SGD(lr=0.05, momentum=0.9, weight_decay=1e-3),
                           lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3)),
    "sgd-nesterov-decay": (lambda: cr.optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
                           lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    "sgd-decay": (lambda: cr.optim.SGD(lr=0.05, weight_decay=1e-3),
                  lambda p: torch.optim.SGD(p, lr=0.05, weight_decay=1e-3)),
    "adam": (lambda: cr.optim.Adam(lr=1e-2), lambda p: torch.optim.Adam(p, lr=1e-2)),
    "adam-decay": (lambda: cr.optim.Adam(lr=1e-2, weight_decay=1e-3),
                   lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3)),
    "adam-amsgrad": (lambda: cr.optim.Adam(lr=1e-2, betas=(0.8, 0.99), amsgrad=True),
                     lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.8, 0.99), amsgrad=True)),
    "adamw": (lambda: cr.optim.AdamW(lr=1e-2, weight_decay=1e-2),
              lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-2)),
    "adamw-amsgrad": (lambda: cr.optim.AdamW(lr=1e-2, weight_decay=1e-2, amsgrad=True),
                      lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-2, amsgrad=True)),
}


def torch_train(net, X, Y, make_optimizer, epochs, batch, schedule=None):
    """The same run in torch: every parameter in one group, records in order, the loss of docs/math.md."""
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in params_of(net)]
    optimizer = make_optimizer(tensors)
    scheduler = schedule(optimizer) if schedule else None
    for _ in range(epochs):
        for start in range(0, len(X), batch):
            A = torch.tensor(X[start:start + batch])
            target = torch.tensor(Y[start:start + batch])
            for l, name in enumerate(net.activations):
                Z = F.linear(A, tensors[2 * l], tensors[2 * l + 1])
                A = torch.sigmoid(Z) if name == "sigmoid" else torch.tanh(Z) if name == "tanh" else Z
            if net.loss == "bce":
                cost = F.binary_cross_entropy_with_logits(Z, target, reduction="sum") / len(target)
            else:
                cost = F.mse_loss(A, target, reduction="sum") / len(target)
            optimizer.zero_grad()
            cost.backward()
            optimizer.step()
        if scheduler:
            scheduler.step()
    return [t.detach().numpy() for t in tensors]


@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_optimizers_match_torch_optim(make_data, case):
    ours, theirs = TORCH_CASES[case]
    net, X, Y = make_run(make_data)
    expected = torch_train(net, X, Y, theirs, EPOCHS, BATCH)
    net.fit(X, Y, epochs=EPOCHS, batch_size=BATCH, shuffle=False, optimizer=ours())
    assert_close(params_of(net), expected, 1e-10)


# One-record steps of a one-layer network take the fused path (record_steps.cpp)
# for SGD with and without momentum and for Adam (no weight decay added to the
# gradient, AdamW's decoupled one taken; not amsgrad); with sample weights of
# 1 the same steps take the general path. Both must give torch's parameters,
# and the same bits.
FUSED_CASES = {
    "plain": lambda: None,
    "momentum": lambda: cr.optim.SGD(lr=0.05, momentum=0.9),
    "nesterov": lambda: cr.optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
    "sklearn-nesterov": lambda: cr.optim.SGD(lr=0.05, momentum=0.9, nesterov=True, form="sklearn"),
    "adam": lambda: cr.optim.Adam(lr=1e-2),
    "adamw": lambda: cr.optim.AdamW(lr=1e-2, weight_decay=1e-2),
    "sklearn-adam": lambda: cr.optim.Adam(lr=1e-2, form="sklearn"),
}


# With one output, 8 to 32 inputs hold the row in registers (1 to 4 chunks of
# 8, the last one overlapping the one before unless 8 divides the row); 7 and
# 33 take the general fused loop.
FUSED_INPUTS = [7, 8, 12, 30, 32, 33]


@pytest.mark.parametrize("inputs", FUSED_INPUTS)
@pytest.mark.parametrize("loss", ["bce", "mse"])
@pytest.mark.parametrize("case", list(FUSED_CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_one_record_steps_equal_the_general_path(make_data, case, loss, dtype, inputs):
    output = "sigmoid" if loss == "bce" else "identity"
    fused, general = (cr.Network([inputs, 1], output=output, loss=loss, dtype=dtype, seed=5) for _ in range(2))
    X, Y = make_data(40, inputs, 1, loss, dtype=dtype, seed=6)
    make = FUSED_CASES[case]
    settings = (lambda: {"lr": 0.05}) if make() is None else (lambda: {"optimizer": make()})
    fused.fit(X, Y, epochs=3, batch_size=1, seed=2, **settings())
    general.fit(X, Y, epochs=3, batch_size=1, seed=2, sample_weight=np.ones(len(X), dtype=dtype), **settings())
    for a, b in zip(params_of(fused), params_of(general)):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("inputs", FUSED_INPUTS)
@pytest.mark.parametrize("case", ["plain", "momentum"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_one_record_steps_diverge_where_the_general_path_does(make_data, case, dtype, inputs):
    # Linear regression at a learning rate past stability: the parameters grow
    # step by step until one step's loss or update is not finite. The fused
    # steps stop at that step, as the general path does, with the parameters
    # and velocity of the steps before it.
    nets = [cr.Network([inputs, 1], output="identity", loss="mse", dtype=dtype, seed=5) for _ in range(2)]
    X, Y = make_data(40, inputs, 1, "mse", dtype=dtype, seed=6)
    optimizers = [cr.optim.SGD(lr=0.5, momentum=0.9 if case == "momentum" else 0.0) for _ in range(2)]
    errors = []
    for net, optimizer, weights in zip(nets, optimizers, [None, np.ones(len(X), dtype=dtype)]):
        with pytest.raises(cr.DivergenceError) as raised:
            net.fit(X, Y, epochs=200, batch_size=1, seed=2, optimizer=optimizer, sample_weight=weights)
        errors.append(str(raised.value))
    assert errors[0] == errors[1]
    for a, b in zip(params_of(nets[0]), params_of(nets[1])):
        assert np.all(np.isfinite(a)) and a.tobytes() == b.tobytes()
    states = [optimizer.state_dict()["state"] for optimizer in optimizers]
    assert states[0]["steps"] == states[1]["steps"] > 0
    assert all(a.tobytes() == b.tobytes() for a, b in zip(states[0]["slots"], states[1]["slots"]))


@pytest.mark.parametrize("case", ["sgd-momentum", "sgd-nesterov", "adam", "adamw"])
def test_fused_one_record_steps_match_torch_optim(make_data, case):
    ours, theirs = TORCH_CASES[case]
    net = cr.Network([7, 1], output="sigmoid", loss="bce", seed=5)
    X, Y = make_data(40, 7, 1, "bce", seed=6)
    expected = torch_train(net, X, Y, theirs, EPOCHS, 1)
    net.fit(X, Y, epochs=EPOCHS, batch_size=1, shuffle=False, optimizer=ours())
    assert_close(params_of(net), expected, 1e-10)


@pytest.mark.parametrize("schedule, torch_schedule", [
    (lambda: cr.optim.StepDecay(step_size=2, gamma=0.5),
     lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5)),
    (lambda: cr.optim.Cosine(t_max=4, eta_min=1e-3),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4, eta_min=1e-3)),
], ids=["step", "cosine"])
def test_schedules_match_torch_lr_schedulers(make_data, schedule, torch_schedule):
    net, X, Y = make_run(make_data, loss="mse")
    expected = torch_train(net, X, Y, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), 4, BATCH,
                           torch_schedule)
    net.fit(X, Y, epochs=4, batch_size=BATCH, shuffle=False, optimizer=cr.optim.SGD(lr=0.05, momentum=0.9),
            schedule=schedule())
    assert_close(params_of(net), expected, 1e-10)


# -- against scikit-learn's optimizer classes, driven by chainrule's gradients ----------------------------------

sklearn_optimizers = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")


def sklearn_train(net, X, Y, optimizer, epochs, batch, alpha=0.0):
    """scikit-learn's optimizer stepping on chainrule's gradient of each batch (plus its alpha term)."""
    work = net.copy()
    params = [w for pair in zip(work.weights, work.biases) for w in pair]  # views: updated in place
    for _ in range(epochs):
        for start in range(0, len(X), batch):
            grads = [np.array(g) for pair in work.gradients(X[start:start + batch], Y[start:start + batch])
                     for g in pair]
            for l in range(len(work.weights)):  # scikit-learn's L2: alpha W / n_samples on the weights
                grads[2 * l] += alpha * params[2 * l] / len(X[start:start + batch])
            optimizer.update_params(params, grads)
        optimizer.iteration_ends(epoch_records(epochs, len(X)))
    return params_of(work)


def epoch_records(_, n):
    return n


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_matches_scikit_learns_sgd_optimizer(make_data, nesterov):
    net, X, Y = make_run(make_data)
    params = [np.array(a) for a in params_of(net)]
    theirs = sklearn_optimizers.SGDOptimizer(params, learning_rate_init=0.05, lr_schedule="constant",
                                             momentum=0.9, nesterov=nesterov)
    expected = sklearn_train(net, X, Y, theirs, EPOCHS, BATCH, alpha=1e-3)
    net.fit(X, Y, epochs=EPOCHS, batch_size=BATCH, shuffle=False, alpha=1e-3,
            optimizer=cr.optim.SGD(lr=0.05, momentum=0.9, nesterov=nesterov, form="sklearn"))
    assert_close(params_of(net), expected, 1e-10)


def test_invscaling_matches_scikit_learns_sgd_optimizer(make_data):
    # scikit-learn sets the rate at the end of each epoch from t, the records seen so far.
    net, X, Y = make_run(make_data)
    params = [np.array(a) for a in params_of(net)]
    theirs = sklearn_optimizers.SGDOptimizer(params, learning_rate_init=0.5, lr_schedule="invscaling",
                                             momentum=0.9, nesterov=True, power_t=0.5)
    work = net.copy()
    views = [w for pair in zip(work.weights, work.biases) for w in pair]
    seen = 0
    for _ in range(EPOCHS):
        for start in range(0, len(X), BATCH):
            grads = [np.array(g) for pair in work.gradients(X[start:start + BATCH], Y[start:start + BATCH])
                     for g in pair]
            theirs.update_params(views, grads)
        seen += len(X)
        theirs.iteration_ends(seen)
    # chainrule's epoch e runs at lr / (t + 1)^power_t with t the records before it: epoch 0 at lr / 1.
    net.fit(X, Y, epochs=EPOCHS, batch_size=BATCH, shuffle=False, schedule="invscaling",
            optimizer=cr.optim.SGD(lr=0.5, momentum=0.9, nesterov=True, form="sklearn"))
    assert_close(params_of(net), params_of(work), 1e-10)


def test_adam_matches_scikit_learns_adam_optimizer(make_data):
    net, X, Y = make_run(make_data)
    params = [np.array(a) for a in params_of(net)]
    theirs = sklearn_optimizers.AdamOptimizer(params, learning_rate_init=1e-2, beta_1=0.9, beta_2=0.999,
                                              epsilon=1e-8)
    expected = sklearn_train(net, X, Y, theirs, EPOCHS, BATCH, alpha=1e-4)
    net.fit(X, Y, epochs=EPOCHS, batch_size=BATCH, shuffle=False, alpha=1e-4,
            optimizer=cr.optim.Adam(lr=1e-2, form="sklearn"))
    assert_close(params_of(net), expected, 1e-10)


# -- the L2 penalty ----------------------------------------------------------------------------------------------

def test_alpha_adds_the_penalty_to_each_batch_cost_and_its_gradient(make_data):
    # One full batch: the epoch cost is the data cost plus alpha/2 ||W||^2 / B, and
    # the step's gradient gets alpha W / B on the weights only (scikit-learn's loss_).
    net, X, Y = make_run(make_data)
    alpha = 0.3
    before = [np.array(w) for w in net.weights]
    data_cost = net.cost(X, Y)
    grads = net.gradients(X, Y)
    twin = net.copy()
    history = net.fit(X, Y, epochs=1, lr=0.1, batch_size=len(X), alpha=alpha, seed=0)
    penalty = 0.5 * alpha * sum(float((w * w).sum()) for w in before) / len(X)
    assert reference.relative_error(history[0], data_cost + penalty) < 1e-12
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        expected_w = twin.weights[l] - 0.1 * (grads[l][0] + alpha * before[l] / len(X))
        expected_b = twin.biases[l] - 0.1 * grads[l][1]
        assert reference.relative_error(w, expected_w) < 1e-12
        assert reference.relative_error(b, expected_b) < 1e-12


def test_alpha_gradient_passes_central_differences(make_data):
    # The penalised cost of one full batch, C + alpha/2 ||W||^2 / B, against the
    # step fit takes: its gradient is (W_before - W_after) / lr.
    net, X, Y = make_run(make_data, loss="mse")
    alpha, lr, h = 0.7, 1e-3, 1e-6

    def penalised(n):
        return n.cost(X, Y) + 0.5 * alpha * sum(float((w * w).sum()) for w in n.weights) / len(X)

    twin = net.copy()
    twin.fit(X, Y, epochs=1, lr=lr, batch_size=len(X), alpha=alpha, seed=0)
    gradient = (net.weights[0] - twin.weights[0]) / lr
    for i, j in [(0, 0), (3, 2), (4, 5)]:
        plus, minus = net.copy(), net.copy()
        plus.weights[0][i, j] += h
        minus.weights[0][i, j] -= h
        numeric = (penalised(plus) - penalised(minus)) / (2 * h)
        assert abs(gradient[i, j] - numeric) < 1e-6 * max(1.0, abs(numeric))


# -- resuming a run ---------------------------------------------------------------------------------------------

RESUMABLE = {
    "sgd-momentum": lambda: cr.optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
    "adam": lambda: cr.optim.Adam(lr=1e-2, amsgrad=True),
    "adamw": lambda: cr.optim.AdamW(lr=1e-2),
    "adam-sklearn": lambda: cr.optim.Adam(lr=1e-2, form="sklearn"),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("case", list(RESUMABLE))
def test_two_fits_with_one_optimizer_equal_one_fit(make_data, case, shuffle, dtype):
    net, X, Y = make_run(make_data, dtype=dtype)
    whole, split = net.copy(), net.copy()
    schedule = cr.optim.Cosine(t_max=5)
    expected = whole.fit(X, Y, epochs=5, batch_size=BATCH, shuffle=shuffle, seed=7, optimizer=RESUMABLE[case](),
                         schedule=schedule)
    optimizer = RESUMABLE[case]()
    first = split.fit(X, Y, epochs=2, batch_size=BATCH, shuffle=shuffle, seed=7, optimizer=optimizer,
                      schedule=schedule)
    assert optimizer.epochs == 2 and optimizer.steps == 2 * RECORDS // BATCH
    second = split.fit(X, Y, epochs=3, batch_size=BATCH, shuffle=shuffle, seed=7, optimizer=optimizer,
                       schedule=schedule)
    assert np.concatenate([first, second]).tobytes() == expected.tobytes()
    assert all(a.tobytes() == b.tobytes() for a, b in zip(params_of(split), params_of(whole)))


@pytest.mark.parametrize("case", list(RESUMABLE))
def test_save_load_and_continue_equals_one_fit(make_data, tmp_path, case):
    net, X, Y = make_run(make_data)
    whole = net.copy()
    expected = whole.fit(X, Y, epochs=4, batch_size=BATCH, seed=8, optimizer=RESUMABLE[case]())
    optimizer = RESUMABLE[case]()
    net.fit(X, Y, epochs=1, batch_size=BATCH, seed=8, optimizer=optimizer)
    net.save(tmp_path / "net.crnn")
    (tmp_path / "optimizer.pickle").write_bytes(pickle.dumps(optimizer))
    loaded = cr.Network.load(tmp_path / "net.crnn")
    resumed = pickle.loads((tmp_path / "optimizer.pickle").read_bytes())
    rest = loaded.fit(X, Y, epochs=3, batch_size=BATCH, seed=8, optimizer=resumed)
    assert rest.tobytes() == expected[1:].tobytes()
    assert all(a.tobytes() == b.tobytes() for a, b in zip(params_of(loaded), params_of(whole)))


def test_a_fit_without_an_optimizer_is_a_run_of_its_own(make_data):
    net, X, Y = make_run(make_data)
    twin = net.copy()
    net.fit(X, Y, epochs=1, lr=0.1, seed=3)
    net.fit(X, Y, epochs=1, lr=0.1, seed=3)
    twin.fit(X, Y, epochs=1, lr=0.1, seed=3)
    again = twin.copy()
    twin.fit(X, Y, epochs=1, lr=0.1, seed=3)  # the same permutation again: each call starts from its seed
    assert all(a.tobytes() == b.tobytes() for a, b in zip(params_of(net), params_of(twin)))
    assert not all(a.tobytes() == b.tobytes() for a, b in zip(params_of(net), params_of(again)))


def test_adaptive_divides_the_rate_by_five_when_the_cost_stalls(make_data):
    net, X, Y = make_run(make_data)
    rates = []  # the rate the run will use next, read after each epoch
    optimizer = cr.optim.SGD(lr=0.5)
    net.fit(X, Y, epochs=12, batch_size=BATCH, seed=1, tol=1e9, n_iter_no_change=2, optimizer=optimizer,
            schedule="adaptive", callback=lambda e, c: rates.append(optimizer._state.learning_rate))
    # tol=1e9: no epoch improves by that much. The count starts at the second
    # epoch (the first sets the best cost) and the rule fires when it reaches 2:
    # after epochs 3, 5, 7, ..., each time dividing the rate by 5 (0 means "lr, not yet divided").
    assert rates[:8] == pytest.approx([0.0, 0.0, 0.1, 0.1, 0.02, 0.02, 0.004, 0.004])


def test_adaptive_stops_training_when_the_rate_would_fall_below_1e_6(make_data):
    net, X, Y = make_run(make_data)
    # n_iter_no_change=1 with an unreachable tol: the rule fires after epochs 2
    # and 3; the first divides 1e-5 to 2e-6, the second would give 4e-7: stop.
    history = net.fit(X, Y, epochs=10, batch_size=BATCH, seed=1, tol=1e9, n_iter_no_change=1,
                      optimizer=cr.optim.SGD(lr=1e-5), schedule="adaptive")
    assert len(history) == 3


# -- thread counts ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(RESUMABLE))
def test_the_same_bits_for_any_thread_count(make_data, at_each_thread_count, case, dtype):
    # 300-256-64-10 (96k parameters): the update is shared by the threads in ranges.
    X, Y = make_data(256, 300, 10, "bce", dtype=dtype, seed=9)
    start = cr.Network([300, 256, 64, 10], activation="relu", dtype=dtype, seed=10)

    def run():
        net = start.copy()
        history = net.fit(X, Y, epochs=2, batch_size=64, seed=11, optimizer=RESUMABLE[case](), alpha=1e-3)
        return [history, *params_of(net)]

    runs = at_each_thread_count(run)
    for other in runs[1:]:
        assert all(a.tobytes() == b.tobytes() for a, b in zip(runs[0], other))


# -- bad settings -----------------------------------------------------------------------------------------------

BAD = {
    "momentum-negative": (lambda: cr.optim.SGD(momentum=-0.1), {}, ValueError, "momentum"),
    "momentum-one": (lambda: cr.optim.SGD(momentum=1.0), {}, ValueError, "momentum"),
    "momentum-nan": (lambda: cr.optim.SGD(momentum=float("nan")), {}, ValueError, "momentum"),
    "nesterov-without-momentum": (lambda: cr.optim.SGD(nesterov=True), {}, ValueError, "nesterov"),
    "weight-decay-negative": (lambda: cr.optim.Adam(weight_decay=-1.0), {}, ValueError, "weight_decay"),
    "beta1-one": (lambda: cr.optim.Adam(betas=(1.0, 0.999)), {}, ValueError, r"betas\[0\]"),
    "beta2-negative": (lambda: cr.optim.Adam(betas=(0.9, -0.5)), {}, ValueError, r"betas\[1\]"),
    "eps-zero": (lambda: cr.optim.Adam(eps=0.0), {}, ValueError, "eps"),
    "lr-negative": (lambda: cr.optim.Adam(lr=-1.0), {}, ValueError, "lr"),
    "lr-nan": (lambda: cr.optim.SGD(lr=float("nan")), {}, ValueError, "lr"),
    "amsgrad-sklearn": (lambda: cr.optim.Adam(amsgrad=True, form="sklearn"), {}, ValueError, "amsgrad"),
    "alpha-negative": (lambda: cr.optim.Adam(), {"alpha": -1.0}, ValueError, "alpha"),
    "alpha-nan": (lambda: cr.optim.Adam(), {"alpha": float("nan")}, ValueError, "alpha"),
    "adaptive-without-tol": (lambda: cr.optim.SGD(), {"schedule": "adaptive"}, ValueError, "tol"),
    "unknown-schedule": (lambda: cr.optim.SGD(), {"schedule": "linear"}, ValueError, "schedule"),
    "schedule-type": (lambda: cr.optim.SGD(), {"schedule": 3}, TypeError, "schedule"),
    "schedule-returns-zero": (lambda: cr.optim.SGD(), {"schedule": lambda e, lr: 0.0}, ValueError, "schedule"),
    "schedule-returns-text": (lambda: cr.optim.SGD(), {"schedule": lambda e, lr: "x"}, TypeError, "schedule"),
    "optimizer-type": (lambda: "adam", {}, TypeError, "optimizer"),
    "lr-and-optimizer": (lambda: cr.optim.Adam(), {"lr": 0.1}, ValueError, "lr"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_settings_are_refused_and_change_nothing(make_data, case):
    make_optimizer, extra, error, name = BAD[case]
    net, X, Y = make_run(make_data)
    optimizer = cr.optim.Adam(lr=1e-2)
    net.fit(X, Y, epochs=1, batch_size=BATCH, seed=0, optimizer=optimizer)  # a run with state
    before, state = params_of(net), optimizer.state_dict()
    with pytest.raises(error, match=name):
        bad = make_optimizer()
        if isinstance(bad, cr.optim.Optimizer) and extra:  # a bad fit argument with the good optimizer
            bad = optimizer
        net.fit(X, Y, epochs=1, batch_size=BATCH, optimizer=bad, **extra)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(params_of(net), before))
    after = optimizer.state_dict()
    assert after["state"]["steps"] == state["state"]["steps"]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(after["state"]["slots"], state["state"]["slots"]))


def test_a_diverging_step_changes_neither_parameters_nor_optimizer_state(make_data):
    net, X, Y = make_run(make_data, loss="mse")
    optimizer = cr.optim.SGD(lr=1e-3, momentum=0.9)
    net.fit(X, Y, epochs=1, batch_size=BATCH, seed=0, optimizer=optimizer)
    before, state = params_of(net), optimizer.state_dict()["state"]
    optimizer.lr = 1e300
    with pytest.raises(cr.DivergenceError):
        net.fit(X, Y * 1e300, epochs=1, batch_size=BATCH, seed=0, optimizer=optimizer)
    after = optimizer.state_dict()["state"]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(params_of(net), before))
    assert after["steps"] == state["steps"]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(after["slots"], state["slots"]))


def test_an_optimizer_belongs_to_one_network(make_data):
    net, X, Y = make_run(make_data)
    optimizer = cr.optim.Adam()
    net.fit(X, Y, epochs=1, optimizer=optimizer)
    other = cr.Network([6, 3, 2], dtype="float64", seed=0)
    with pytest.raises(ValueError, match="optimizer"):
        other.fit(X, Y, epochs=1, optimizer=optimizer)
    optimizer.reset()
    other.fit(X, Y, epochs=1, optimizer=optimizer)


# -- sample weights ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_integer_sample_weights_equal_repeating_the_records(make_data, loss):
    # Full-batch steps: a weight of k is the record k times over.
    net, X, Y = make_run(make_data, loss=loss)
    counts = np.random.default_rng(5).integers(0, 4, len(X))
    counts[0] = 2
    repeated = net.copy()
    Xr, Yr = np.ascontiguousarray(np.repeat(X, counts, axis=0)), np.ascontiguousarray(np.repeat(Y, counts, axis=0))
    expected = repeated.fit(Xr, Yr, epochs=3, batch_size=len(Xr), shuffle=False, alpha=1e-2,
                            optimizer=cr.optim.Adam(lr=1e-2))
    got = net.fit(X, Y, epochs=3, batch_size=len(X), shuffle=False, alpha=1e-2, optimizer=cr.optim.Adam(lr=1e-2),
                  sample_weight=counts)
    assert reference.relative_error(got, expected) < 1e-12
    assert_close(params_of(net), params_of(repeated), 1e-12)
    assert reference.relative_error(net.cost(X, Y, sample_weight=counts), repeated.cost(Xr, Yr)) < 1e-12


def test_weighted_cost_and_gradients_are_the_weighted_means(make_data):
    net, X, Y = make_run(make_data, loss="mse")
    w = np.random.default_rng(6).random(len(X)) * 3
    per_record = [net.cost(X[i:i + 1], Y[i:i + 1]) for i in range(len(X))]
    assert reference.relative_error(net.cost(X, Y, sample_weight=w), np.dot(w, per_record) / w.sum()) < 1e-12
    expected = [sum(w[i] * g for i, g in enumerate(gs)) / w.sum()
                for gs in zip(*[[a for pair in net.gradients(X[i:i + 1], Y[i:i + 1]) for a in pair]
                                for i in range(len(X))])]
    got = [a for pair in net.gradients(X, Y, sample_weight=w) for a in pair]
    assert_close(got, expected, 1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shuffled_weighted_training_is_the_same_at_any_thread_count(make_data, at_each_thread_count, dtype):
    X, Y = make_data(256, 300, 10, "bce", dtype=dtype, seed=12)
    w = np.random.default_rng(13).random(256)
    w[:64] = 0.0  # some batches hold only records of weight 0: they take no step
    start = cr.Network([300, 256, 10], dtype=dtype, seed=14)

    def run():
        net = start.copy()
        history = net.fit(X, Y, epochs=2, batch_size=16, seed=15, sample_weight=w,
                          optimizer=cr.optim.SGD(lr=0.05, momentum=0.9))
        return [history, *params_of(net)]

    runs = at_each_thread_count(run, counts=(1, 2, 3))
    assert all(np.isfinite(runs[0][0]))
    for other in runs[1:]:
        assert all(a.tobytes() == b.tobytes() for a, b in zip(runs[0], other))


BAD_WEIGHTS = {
    "wrong-length": (np.ones(5), ValueError),
    "two-d": (np.ones((40, 1)), ValueError),
    "nan": (np.r_[np.ones(39), np.nan], ValueError),
    "negative": (np.r_[np.ones(39), -1.0], ValueError),
    "all-zero": (np.zeros(40), ValueError),
    "text": (np.array(["a"] * 40), TypeError),
    "masked": (np.ma.masked_array(np.ones(40)), TypeError),
}


@pytest.mark.parametrize("method", ["fit", "cost", "gradients"])
@pytest.mark.parametrize("case", list(BAD_WEIGHTS))
def test_bad_sample_weights_are_refused_and_change_nothing(make_data, case, method):
    weights, error = BAD_WEIGHTS[case]
    net, X, Y = make_run(make_data)
    optimizer = cr.optim.SGD(lr=0.1, momentum=0.9)
    net.fit(X, Y, epochs=1, seed=0, optimizer=optimizer)
    before, steps = params_of(net), optimizer.steps
    with pytest.raises(error, match="sample_weight"):
        if method == "fit":
            net.fit(X, Y, epochs=1, seed=0, optimizer=optimizer, sample_weight=weights)
        else:
            getattr(net, method)(X, Y, sample_weight=weights)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(params_of(net), before))
    assert optimizer.steps == steps
