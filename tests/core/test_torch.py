"""Costs and gradients against torch autograd, for the same weights.

The torch model is written with torch.nn.functional ops and the losses as
docs/math.md defines them: summed over the outputs of a record, averaged over the
records. Skipped where torch is not installed.
"""

import numpy as np
import pytest

import chainrule as cr
import reference

torch = pytest.importorskip("torch")
F = torch.nn.functional

TORCH_ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "identity": lambda z: z,
    "tanh": torch.tanh,
    "relu": torch.relu,  # gradient 0 at z == 0, as docs/math.md's "1 if a > 0 else 0"
    "leaky_relu": lambda z: F.leaky_relu(z, 0.01),  # gradient 0.01 at z == 0, as docs/math.md's
    "softmax": lambda z: torch.softmax(z, dim=1),  # row-wise; chainrule's extension (docs/math.md)
}


def torch_cost_and_gradients(params, activations, loss, X, Y, dtype):
    """C and [(dW_l, db_l)] by autograd; params as [(W (n_l, n_{l-1}), b (n_l,))]."""
    tensors = [(torch.tensor(W, dtype=dtype, requires_grad=True), torch.tensor(b, dtype=dtype, requires_grad=True))
               for W, b in params]
    A = torch.tensor(X, dtype=dtype)
    Y = torch.tensor(Y, dtype=dtype)
    num_records = A.shape[0]
    for (W, b), name in zip(tensors, activations):
        Z = F.linear(A, W, b)  # A W^T + b, W of shape (out, in) as in docs/math.md
        A = TORCH_ACTIVATIONS[name](Z)
    if loss == "bce":  # from the logits Z_L; sum over outputs, mean over records
        cost = F.binary_cross_entropy_with_logits(Z, Y, reduction="sum") / num_records
    elif loss == "cce":  # from the logits, with probability targets (one-hot or soft)
        cost = F.cross_entropy(Z, Y, reduction="sum") / num_records
    else:
        cost = F.mse_loss(A, Y, reduction="sum") / num_records
    cost.backward()
    grads = [(W.grad.numpy(), b.grad.numpy()) for W, b in tensors]
    return cost.item(), grads


def _compare(net, copy_params, X, Y, torch_dtype, tolerance):
    expected_cost, expected_grads = torch_cost_and_gradients(copy_params(net), net.activations, net.loss, X, Y,
                                                             torch_dtype)
    assert reference.relative_error(net.cost(X, Y), expected_cost) < tolerance
    for layer, ((dW, db), (dW_torch, db_torch)) in enumerate(zip(net.gradients(X, Y), expected_grads), start=1):
        assert np.any(dW_torch != 0) and np.any(db_torch != 0), f"layer {layer}: all-zero torch gradient"
        for name, got, expected in (("dW", dW, dW_torch), ("db", db, db_torch)):
            error = reference.relative_error(got, expected)
            assert error < tolerance, f"{name}_{layer}: relative error {error:.3g}"


ACTIVATIONS = [name for name in cr.ACTIVATIONS if name != "softmax"]  # every elementwise activation


@pytest.mark.parametrize("loss", ["bce", "mse"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float64_gradients_match_autograd(make_data, copy_params, activation, loss):
    """Hidden layers use the activation under test; so does the output for MSE
    (BCE needs a sigmoid output)."""
    output = "sigmoid" if loss == "bce" else activation
    net = cr.Network([5, 7, 6, 3], activation=activation, output=output, loss=loss, dtype="float64", seed=41)
    X, Y = make_data(17, 5, 3, loss, seed=42)
    _compare(net, copy_params, X, Y, torch.float64, tolerance=1e-10)


def test_float64_logistic_regression_matches_autograd(make_data, copy_params):
    net = cr.Network([4, 1], output="sigmoid", loss="bce", dtype="float64", seed=43)
    X, Y = make_data(9, 4, 1, "bce", seed=44)
    _compare(net, copy_params, X, Y, torch.float64, tolerance=1e-10)


def test_float32_gradients_match_autograd(make_data, copy_params):
    """Both sides in float32, each rounding in its own order: 1e-4 is a few
    hundred float32 roundings (2^-24 each) of room, far below any math error."""
    net = cr.Network([5, 8, 6, 2], activation=["tanh", "relu"], output="sigmoid", loss="bce", dtype="float32",
                     seed=45)
    X, Y = make_data(21, 5, 2, "bce", dtype="float32", seed=46)
    _compare(net, copy_params, X, Y, torch.float32, tolerance=1e-4)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layer_sizes", [[4, 3], [5, 7, 3], [5, 7, 6, 4], [5, 7, 6, 4, 3]],
                         ids=["depth1", "depth2", "depth3", "depth4"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_softmax_cce_gradients_match_autograd(make_data, copy_params, activation, layer_sizes, dtype):
    """softmax + CCE against torch's cross_entropy from the logits, one-hot targets."""
    net = cr.Network(layer_sizes, activation=activation, output="softmax", loss="cce", dtype=dtype, seed=47)
    X, Y = make_data(17, layer_sizes[0], layer_sizes[-1], "cce", dtype=dtype, seed=48)
    tolerance, torch_dtype = (1e-10, torch.float64) if dtype == "float64" else (1e-4, torch.float32)
    _compare(net, copy_params, X, Y, torch_dtype, tolerance)


def test_softmax_cce_with_soft_labels_matches_autograd(make_data, copy_params):
    net = cr.Network([4, 6, 3], activation="tanh", output="softmax", loss="cce", dtype="float64", seed=49)
    X, _ = make_data(11, 4, 3, "cce", seed=50)
    P = np.random.default_rng(51).random((11, 3)) + 0.05
    _compare(net, copy_params, X, np.ascontiguousarray(P / P.sum(axis=1, keepdims=True)), torch.float64, 1e-10)
