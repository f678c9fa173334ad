"""Every public name of chainrule, used as a typed program would use it.

Two jobs in one file. pytest runs it, so every call here really happens
against the installed package; and tests/typing/test_mypy.py type-checks it
with ``mypy --strict``, so every annotation of the public API (network.py,
optim.py, sklearn.py, onnx.py, the stub _core.pyi) must agree with these
uses. The annotated variables are the point: a public signature that returned
``Any``, or the wrong type, would fail the type check here.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import pickle
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import numpy.typing as npt
import pytest

import chainrule as cr
from chainrule import optim

FloatArray = npt.NDArray[np.floating[Any]]

X: npt.NDArray[np.float64] = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
Y: npt.NDArray[np.float64] = np.array([0, 1, 1, 0], dtype=np.float64)


def test_module_level_names() -> None:
    version: str = cr.__version__
    activations: Tuple[str, ...] = cr.ACTIVATIONS
    losses: Tuple[str, ...] = cr.LOSSES
    assert version and "relu" in activations and "bce" in losses
    before: int = cr.get_num_threads()
    cr.set_num_threads(1)
    assert cr.get_num_threads() == 1
    cr.set_num_threads(before)
    errors: List[type] = [cr.DivergenceError, cr.ModelFormatError, cr.BusyError]
    assert issubclass(errors[0], FloatingPointError) and issubclass(errors[1], ValueError)
    assert issubclass(errors[2], RuntimeError)


def test_network(tmp_path: Path) -> None:
    net: cr.Network = cr.Network([2, 4, 1], activation="tanh", output="sigmoid", loss="bce", dtype="float64", seed=1)
    sizes: Tuple[int, ...] = net.layer_sizes
    names: Tuple[str, ...] = net.activations
    loss: str = net.loss
    dtype: np.dtype[Any] = net.dtype
    n_params: int = net.n_params
    weights: Tuple[FloatArray, ...] = net.weights
    biases: Tuple[FloatArray, ...] = net.biases
    assert (sizes, names, loss, dtype, n_params) == ((2, 4, 1), ("tanh", "sigmoid"), "bce", np.dtype(np.float64), 17)
    assert [w.shape for w in weights] == [(4, 2), (1, 4)] and [b.shape for b in biases] == [(4,), (1,)]

    output: FloatArray = net.predict(X)
    cost: float = net.cost(X, Y, sample_weight=[1.0, 2.0, 1.0, 2.0])
    gradients: List[Tuple[FloatArray, FloatArray]] = net.gradients(X, Y)
    before_step: float = net.sgd_step(X, Y, lr=0.5)
    assert output.shape == (4, 1) and cost > 0 and before_step > 0 and gradients[0][0].shape == (4, 2)

    epochs_seen: List[int] = []

    def callback(epoch: int, cost: float) -> bool:
        epochs_seen.append(epoch)
        return True

    history: npt.NDArray[np.float64] = net.fit(X, Y, epochs=3, lr=0.5, batch_size=2, shuffle=True, seed=0, tol=None,
                                               n_iter_no_change=10, callback=callback, progress=False, alpha=1e-4,
                                               sample_weight=np.ones(4), dropout=0.1)
    assert history.shape == (3,) and epochs_seen == [0, 1, 2]

    adam: optim.Adam = optim.Adam(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False)
    net.fit(X, Y, epochs=2, optimizer=adam, schedule=optim.Cosine(t_max=4, eta_min=0.0), seed=0)
    net.fit(X, Y, epochs=2, optimizer=adam, schedule="constant")
    steps: int = adam.steps
    run_epochs: int = adam.epochs
    state: Dict[str, Any] = adam.state_dict()
    assert (steps, run_epochs, state["type"]) == (4, 4, "Adam")  # one batch of 4 records per epoch
    restored = optim.Adam()
    restored.load_state_dict(state)
    restored.reset()
    assert restored.epochs == 0

    path = tmp_path / "net.crnn"
    net.save(path)
    net.save(str(path))
    net.save(os.fsencode(path))
    loaded: cr.Network = cr.Network.load(path)
    twin: cr.Network = net.copy()
    shallow: cr.Network = copy.copy(net)
    deep: cr.Network = copy.deepcopy(net)
    unpickled: cr.Network = pickle.loads(pickle.dumps(net))
    for other in (loaded, twin, shallow, deep, unpickled):
        assert all(np.array_equal(a, b) for a, b in zip(net.weights, other.weights))
    text: str = repr(net)
    assert text.startswith("Network([2, 4, 1]")


def test_optimizers_and_schedules() -> None:
    optimizers: List[optim.Optimizer] = [
        optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4, form="torch"),
        optim.SGD(lr=0.1, momentum=0.9, form="sklearn"),
        optim.Adam(lr=1e-3, form="sklearn"),
        optim.AdamW(lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=1e-2, amsgrad=True),
    ]
    schedules: List[optim.Schedule] = [optim.Constant(), optim.InvScaling(power_t=0.5), optim.StepDecay(2, gamma=0.5),
                                       optim.Cosine(t_max=3, eta_min=0.0)]

    def halving(epoch: int, lr: float) -> float:
        return lr * 0.5**epoch

    for optimizer, schedule in zip(optimizers, schedules):
        net = cr.Network([2, 3, 1], seed=0)
        history = net.fit(X, Y, epochs=2, optimizer=optimizer, schedule=schedule, seed=0)
        assert history.shape == (2,) and optimizer.epochs == 2
    adaptive: optim.Schedule = optim.Adaptive()
    cr.Network([2, 1], seed=0).fit(X, Y, epochs=2, lr=0.1, schedule=adaptive, tol=1e-3, seed=0)
    cr.Network([2, 1], seed=0).fit(X, Y, epochs=2, lr=0.1, schedule=halving, seed=0)
    custom = optim.Schedule("constant", custom=halving)
    cr.Network([2, 1], seed=0).fit(X, Y, epochs=2, lr=0.1, schedule=custom, seed=0)


def test_sklearn_estimators() -> None:
    pytest.importorskip("sklearn")
    from chainrule.sklearn import LogisticRegression, MLPClassifier, MLPRegressor

    labels = np.array([0, 1, 1, 0] * 5)
    data = np.tile(X, (5, 1))
    clf: MLPClassifier = MLPClassifier(hidden_layer_sizes=(8,), activation="relu", solver="sgd",
                                       learning_rate_init=0.5, max_iter=500, random_state=0, dtype="float64")
    fitted: MLPClassifier = clf.fit(data, labels)
    predicted: npt.NDArray[Any] = fitted.predict(data)
    probabilities: FloatArray = fitted.predict_proba(data)
    log_probabilities: FloatArray = fitted.predict_log_proba(data)
    assert predicted.tolist() == labels.tolist()
    assert probabilities.shape == log_probabilities.shape == (20, 2)
    again: MLPClassifier = MLPClassifier(hidden_layer_sizes=(4,), random_state=0).partial_fit(data, labels,
                                                                                              classes=[0, 1])
    assert again.n_iter_ == 1

    reg: MLPRegressor = MLPRegressor(hidden_layer_sizes=(), solver="sgd", learning_rate_init=0.1,
                                     random_state=0).fit(data, data.sum(axis=1))
    values: FloatArray = reg.predict(data)
    more: MLPRegressor = reg.partial_fit(data, data.sum(axis=1), sample_weight=np.ones(20))
    assert values.shape == (20,) and more is reg

    logistic: LogisticRegression = LogisticRegression(max_iter=1000, random_state=0).fit(data[:, :1], data[:, 0])
    assert logistic.predict(data[:2, :1]).tolist() == [0.0, 0.0]


def test_onnx(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("sklearn")
    import onnx

    import chainrule.onnx

    net = cr.Network([2, 3, 1], seed=0)
    opset: int = chainrule.onnx.DEFAULT_OPSET
    model: onnx.ModelProto = chainrule.onnx.to_onnx(net, dtype="float32", opset=opset, input_name="X",
                                                    output_name="Y")
    chainrule.onnx.save(model, tmp_path / "net.onnx")
    chainrule.onnx.save(net, str(tmp_path / "net2.onnx"))
    chainrule.onnx.register_converters()
    assert onnx.load(str(tmp_path / "net.onnx")).graph.output[0].name == "Y"


def test_bench_entry_point() -> None:
    from chainrule.bench.run import main

    text = io.StringIO()
    with contextlib.redirect_stdout(text), pytest.raises(SystemExit) as stop:
        main(["--help"], prog="python -m chainrule.bench")
    assert stop.value.code == 0 and "--quick" in text.getvalue()
