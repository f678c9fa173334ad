"""One SGD step worked out by hand, arithmetic in the comments.

The numbers are chosen exact in binary (0.5, -0.25, 0.125, ...) so that the
only rounding is in exp; the expected values are computed below from the hand
formulas with math.exp, and chainrule must match them to 1e-15 relative.
"""

import math

import numpy as np
import pytest

import chainrule as cr

HAND_TOLERANCE = 1e-15


def sigma(z):
    return 1.0 / (1.0 + math.exp(-z))


def assert_hand(got, expected):
    """got (array or float) equals expected (nested lists) to 1e-15 relative, entry by entry."""
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape
    for g, e in zip(got.ravel(), expected.ravel()):
        assert math.isclose(g, e, rel_tol=HAND_TOLERANCE, abs_tol=0.0), (g, e)


def test_logistic_regression_step():
    """Seed 000: one sigmoid unit, BCE, one record x = [1, 2], y = 1; lr = 0.5."""
    w, b = [0.5, -0.25], 0.125
    x, y, lr = [1.0, 2.0], 1.0, 0.5
    net = cr.Network([2, 1], output="sigmoid", loss="bce", dtype="float64", seed=0)
    net.weights[0][:] = [w]  # W_1 has shape (1, 2)
    net.biases[0][:] = [b]
    X = np.array([x])
    Y = np.array([[y]])

    # z = w1 x1 + w2 x2 + b = 0.5*1 + (-0.25)*2 + 0.125 = 0.125
    z = w[0] * x[0] + w[1] * x[1] + b
    assert z == 0.125
    # a = sigma(z) = 1 / (1 + e^{-0.125}) = 0.53120937337...
    a = sigma(z)
    # L = -y log a - (1 - y) log(1 - a) = -log(0.53120937...) = 0.63259903531...
    loss = -y * math.log(a) - (1 - y) * math.log(1 - a)
    # dL/dz = dL/da * da/dz = (a - y) / (a (1 - a)) * a (1 - a) = a - y = -0.46879062662...
    dz = a - y
    # dL/dw_i = (a - y) x_i = [-0.46879062662..., -0.93758125325...]
    # (seed 000's "Final Gradients" writes (a - y) z_i; with z = 0.125 that would
    #  be [-0.0586, -0.0586] for both weights: the x is what belongs there.)
    dw = [dz * x[0], dz * x[1]]
    # dL/db = a - y = -0.46879062662...
    db = dz
    # w <- w - lr dw = [0.5 + 0.5*0.46879..., -0.25 + 0.5*0.93758...] = [0.73439531331..., 0.21879062662...]
    # b <- b - lr db = 0.125 + 0.5*0.46879... = 0.35939531331...
    new_w = [w[0] - lr * dw[0], w[1] - lr * dw[1]]
    new_b = b - lr * db

    assert_hand(net.predict(X), [[a]])
    assert_hand(net.cost(X, Y), loss)
    (dW, db_got), = net.gradients(X, Y)
    assert_hand(dW, [dw])
    assert_hand(db_got, [db])
    assert not np.allclose(dW, [[dz * z, dz * z]])  # not seed 000's slip

    assert_hand(net.sgd_step(X, Y, lr), loss)  # returns the cost before the step
    assert_hand(net.weights[0], [new_w])
    assert_hand(net.biases[0], [new_b])


def test_logistic_regression_step_with_y_zero():
    """Same model, y = 0: dL/dz = a - 0 = a, so every gradient flips sign and
    the step moves w and b down. L = -log(1 - a) = log(1 + e^{z})."""
    w, b = [0.5, -0.25], 0.125
    x, y, lr = [1.0, 2.0], 0.0, 0.5
    net = cr.Network([2, 1], output="sigmoid", loss="bce", dtype="float64", seed=0)
    net.weights[0][:] = [w]
    net.biases[0][:] = [b]

    z = w[0] * x[0] + w[1] * x[1] + b  # 0.125, as above
    a = sigma(z)  # 0.53120937337...
    loss = math.log(1.0 + math.exp(z))  # -log(1 - a) = 0.75759903531...
    dz = a - y  # 0.53120937337...
    assert_hand(net.sgd_step(np.array([x]), np.array([y]), lr), loss)  # 1-D y: n_L == 1
    # w <- [0.5 - 0.5*0.53120..., -0.25 - 0.5*1.06241...] = [0.23439531331..., -0.78120937337...]
    assert_hand(net.weights[0], [[w[0] - lr * dz * x[0], w[1] - lr * dz * x[1]]])
    # b <- 0.125 - 0.5*0.53120... = -0.14060468668...
    assert_hand(net.biases[0], [b - lr * dz])


def test_two_layer_mse_identity_step():
    """Seed 003's network: 2 inputs, 2 sigmoid hidden units, 1 identity output,
    MSE; one record x = [1, 2], y = 2; lr = 0.1. Keeps MSE's factor 2 (and the
    learning rate on the biases) that seed 003 drops."""
    W1, b1 = [[0.5, -0.25], [0.25, 0.5]], [0.0, -0.25]
    W2, b2 = [[1.0, -0.5]], [0.25]
    x, y, lr = [1.0, 2.0], 2.0, 0.1
    net = cr.Network([2, 2, 1], activation="sigmoid", output="identity", loss="mse", dtype="float64", seed=0)
    net.weights[0][:] = W1
    net.biases[0][:] = b1
    net.weights[1][:] = W2
    net.biases[1][:] = b2
    X = np.array([x])
    Y = np.array([[y]])

    # Forward.
    # z1 = W1 x + b1 = [0.5*1 - 0.25*2 + 0, 0.25*1 + 0.5*2 - 0.25] = [0, 1]
    z1 = [W1[i][0] * x[0] + W1[i][1] * x[1] + b1[i] for i in range(2)]
    assert z1 == [0.0, 1.0]
    # a1 = sigma(z1) = [0.5, 0.73105857863...]
    a1 = [sigma(z) for z in z1]
    # z2 = W2 a1 + b2 = 1*0.5 - 0.5*0.73105857863 + 0.25 = 0.38447071068...;  a2 = z2 (identity)
    a2 = W2[0][0] * a1[0] + W2[0][1] * a1[1] + b2[0]
    # L = (a2 - y)^2 = (-1.61552928931...)^2 = 2.60993488463...
    loss = (a2 - y) ** 2

    # Backward.
    # dZ2 = dL/dz2 = 2 (a2 - y) * 1 = -3.23105857863...   (seed 003 writes a2 - y, without the 2)
    dZ2 = 2.0 * (a2 - y)
    # dW2 = dZ2 a1^T = [-3.23105857863*0.5, -3.23105857863*0.73105857863] = [-1.61552928931..., -2.36209309196...]
    dW2 = [[dZ2 * a1[0], dZ2 * a1[1]]]
    # db2 = dZ2 = -3.23105857863...
    db2 = [dZ2]
    # dZ1 = (dZ2 W2) * sigma'(z1), sigma'(z1) = a1 (1 - a1) = [0.25, 0.19661193324...]
    #     = [-3.23105857863*1*0.25, -3.23105857863*(-0.5)*0.19661193324] = [-0.80776464465..., 0.31763233678...]
    dZ1 = [dZ2 * W2[0][i] * a1[i] * (1.0 - a1[i]) for i in range(2)]
    # dW1 = dZ1 x^T = [[-0.80776464465, -1.61552928931], [0.31763233678, 0.63526467356]]
    dW1 = [[dZ1[i] * x[0], dZ1[i] * x[1]] for i in range(2)]
    # db1 = dZ1
    db1 = dZ1

    # Update, every parameter with lr (seed 003 leaves it off the biases):
    # W1 <- [[0.5 + 0.080776464465, -0.25 + 0.161552928931], [0.25 - 0.031763233678, 0.5 - 0.063526467356]]
    #     = [[0.58077646446..., -0.08844707106...], [0.21823676632..., 0.43647353264...]]
    # b1 <- [0 + 0.080776464465, -0.25 - 0.031763233678] = [0.08077646446..., -0.28176323367...]
    # W2 <- [[1 + 0.161552928931, -0.5 + 0.236209309196]] = [[1.16155292893..., -0.26379069080...]]
    # b2 <- 0.25 + 0.323105857863 = 0.57310585786...
    def step(p, dp):
        return (np.asarray(p) - lr * np.asarray(dp)).tolist()

    assert_hand(net.predict(X), [[a2]])
    assert_hand(net.cost(X, Y), loss)
    (dW1_got, db1_got), (dW2_got, db2_got) = net.gradients(X, Y)
    assert_hand(dW1_got, dW1)
    assert_hand(db1_got, db1)
    assert_hand(dW2_got, dW2)
    assert_hand(db2_got, db2)
    assert not np.allclose(db2_got, [a2 - y])  # not seed 003's dropped factor 2

    assert_hand(net.sgd_step(X, Y, lr), loss)
    assert_hand(net.weights[0], step(W1, dW1))
    assert_hand(net.biases[0], step(b1, db1))
    assert_hand(net.weights[1], step(W2, dW2))
    assert_hand(net.biases[1], step(b2, db2))


@pytest.mark.parametrize("y", [0.0, 1.0], ids=["y0", "y1"])
def test_logistic_step_in_float32(y):
    """The seeds' step in float32: the same formulas, held to float32's
    precision (a few roundings of 2^-24, so 1e-6 relative)."""
    w, b, x, lr = [0.5, -0.25], 0.125, [1.0, 2.0], 0.5
    net = cr.Network([2, 1], output="sigmoid", loss="bce", dtype="float32", seed=0)
    net.weights[0][:] = [w]
    net.biases[0][:] = [b]
    dz = sigma(0.125) - y
    net.sgd_step(np.array([x], dtype=np.float32), np.array([[y]], dtype=np.float32), lr)
    np.testing.assert_allclose(net.weights[0], [[w[0] - lr * dz * x[0], w[1] - lr * dz * x[1]]], rtol=1e-6)
    np.testing.assert_allclose(net.biases[0], [b - lr * dz], rtol=1e-6)
