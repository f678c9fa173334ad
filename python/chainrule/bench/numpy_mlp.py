"""docs/math.md in plain NumPy: the peer a NumPy user would write, and the benchmark's reference.

Vectorized per batch, one record per row, computed in the dtype of the
parameters (float32 stays float32). Nothing is tuned: no preallocated
buffers, no fused kernels, just the equations with `@`. The agreement check
in run.py compares every other implementation against this one.

Shapes: X (B, n_0), Y (B, n_L), W_l (n_l, n_{l-1}), b_l (n_l,).
"""

from __future__ import annotations

import numpy as np

# -- activations: f(z), and f'(z) through the cached output a = f(z) ------------


def sigmoid(z):
    """1 / (1 + e^{-z}) without overflow: with e = e^{-|z|} <= 1, it is 1/(1+e) for z >= 0, e/(1+e) below."""
    e = np.exp(-np.abs(z))
    inverse = 1 / (1 + e)
    return np.where(z >= 0, inverse, e * inverse)


ACTIVATIONS = {
    "sigmoid": sigmoid,
    "identity": lambda z: z,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
}
DERIVATIVES = {
    "sigmoid": lambda a: a * (1 - a),
    "identity": lambda a: np.ones_like(a),
    "tanh": lambda a: 1 - a * a,
    "relu": lambda a: (a > 0).astype(a.dtype),
}

# -- one dense layer -------------------------------------------------------------


def dense_forward(a_prev, weight, bias):
    """Z_l = A_{l-1} W_l^T + b_l: (B, n_{l-1}) -> (B, n_l)."""
    return a_prev @ weight.T + bias


def dense_backward(dz, a_prev, weight, need_dinput):
    """dW_l = dZ_l^T A_{l-1} / B,  db_l = sum_records dZ_l / B,  dA_{l-1} = dZ_l W_l (if needed).

    dz is the per-record delta dZ_l (B, n_l); the 1/B makes dW, db the gradient of the mean cost.
    """
    batch = dz.shape[0]
    dweight = dz.T @ a_prev / batch
    dbias = dz.sum(axis=0) / batch
    da_prev = dz @ weight if need_dinput else None
    return dweight, dbias, da_prev


# -- loss ---------------------------------------------------------------------------


def record_losses(z_out, a_out, y, loss):
    """L per record (B,), summed over the outputs.

    BCE from the logits, so a saturated sigmoid never takes log(0):
    max(z, 0) - z y + log(1 + e^{-|z|}).  MSE: sum_k (a_k - y_k)^2.
    """
    if loss == "bce":
        return (np.maximum(z_out, 0) - z_out * y + np.log1p(np.exp(-np.abs(z_out)))).sum(axis=1)
    return ((a_out - y) ** 2).sum(axis=1)


def output_delta(a_out, y, output, loss):
    """dZ_L per record (B, n_L)."""
    if loss == "bce":
        if output != "sigmoid":
            raise ValueError("BCE needs a sigmoid output")
        return a_out - y                      # d/dz of BCE(sigmoid(z)): holds for sigmoid + BCE only
    delta = 2 * (a_out - y)                   # d/da of (a - y)^2
    if output != "identity":
        delta = delta * DERIVATIVES[output](a_out)
    return delta


# -- the network ----------------------------------------------------------------------


class NumpyMLP:
    """A dense network trained by mini-batch SGD, records in order (docs/math.md)."""

    def __init__(self, weights, biases, activations, loss):
        self.weights = [np.array(w) for w in weights]
        self.biases = [np.array(b) for b in biases]
        self.activations = tuple(activations)
        self.loss = loss

    def forward(self, X):
        """A_0..A_L as a list, and the output logits Z_L."""
        outputs = [X]
        for weight, bias, name in zip(self.weights, self.biases, self.activations):
            z = dense_forward(outputs[-1], weight, bias)
            outputs.append(ACTIVATIONS[name](z))
        return outputs, z

    def predict(self, X):
        """A_L (B, n_L)."""
        return self.forward(X)[0][-1]

    def sgd_step(self, X, Y, lr) -> float:
        """One SGD step on the batch; returns the batch cost before the step."""
        outputs, z_out = self.forward(X)
        cost = float(record_losses(z_out, outputs[-1], Y, self.loss).mean())
        dz = output_delta(outputs[-1], Y, self.activations[-1], self.loss)
        for layer in reversed(range(len(self.weights))):
            weight = self.weights[layer]
            dweight, dbias, da_prev = dense_backward(dz, outputs[layer], weight, need_dinput=layer > 0)
            if layer > 0:
                # dZ_{l-1} = (dZ_l W_l) * f'(Z_{l-1}), with W_l before its update below
                dz = da_prev * DERIVATIVES[self.activations[layer - 1]](outputs[layer])
            weight -= lr * dweight
            self.biases[layer] -= lr * dbias
        return cost

    def fit(self, X, Y, epochs, lr, batch_size):
        """Train in order; return each epoch's cost (the batch costs weighted by batch size)."""
        num_records = X.shape[0]
        costs = []
        for _ in range(epochs):
            total = 0.0
            for start in range(0, num_records, batch_size):
                stop = min(start + batch_size, num_records)
                total += self.sgd_step(X[start:stop], Y[start:stop], lr) * (stop - start)
            costs.append(total / num_records)
        return np.array(costs)
