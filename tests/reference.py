"""An independent plain-NumPy implementation of docs/math.md, the math contract.

Written from the equations, not from the C++ core, so that agreement between
the two means something. Everything is computed in float64 whatever dtype the
inputs have. Parameters are ``[(W_1, b_1), ..., (W_L, b_L)]`` with ``W_l`` of
shape ``(n_l, n_{l-1})`` and ``b_l`` of shape ``(n_l,)``; ``activations`` names
the activation of each layer, the output's last; ``loss`` is 'bce', 'mse' or
'cce'. Softmax + categorical cross-entropy is written here from docs/math.md
("Softmax and categorical cross-entropy").
Arrays are ``X (B, n_0)`` and ``Y (B, n_L)``, one record per row.
"""

import numpy as np

# -- activations ------------------------------------------------------------


def sigmoid(z):
    """(any shape) -> same shape. f(z) = 1 / (1 + e^{-z}), stable for any finite z.

    e^{-|z|} never overflows: for z >= 0 use 1 / (1 + e^{-z}), for z < 0 the
    equal e^{z} / (1 + e^{z}).
    """
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# f(z), and f'(z) written through the cached output a = f(z) (docs/math.md's table).
ACTIVATIONS = {
    "sigmoid": sigmoid,
    "identity": lambda z: np.array(z, dtype=np.float64),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
}
DERIVATIVES = {
    "sigmoid": lambda a: a * (1.0 - a),           # a (1 - a)
    "identity": lambda a: np.ones_like(a),        # 1
    "tanh": lambda a: 1.0 - a * a,                # 1 - a^2
    "relu": lambda a: (a > 0).astype(np.float64),  # 1 if a > 0 else 0
    "leaky_relu": lambda a: np.where(a > 0, 1.0, 0.01),  # 1 if a > 0 else 0.01
}


def softmax(Z):
    """Z (B, K) -> A (B, K), each row a_k = e^{z_k - m} / sum_j e^{z_j - m} with m the row maximum.

    Row-wise, not elementwise: it is the output activation of the 'cce' loss
    only, and has no entry in DERIVATIVES (its Jacobian is not diagonal).
    """
    Z = np.asarray(Z, dtype=np.float64)
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


ACTIVATIONS["softmax"] = softmax


def log_softmax(Z):
    """Z (B, K) -> log A (B, K) = z_k - lse(z), lse(z) = m + log sum_j e^{z_j - m}: never log(0)."""
    Z = np.asarray(Z, dtype=np.float64)
    m = Z.max(axis=1, keepdims=True)
    return Z - (m + np.log(np.exp(Z - m).sum(axis=1, keepdims=True)))


def _as_float64(params, X, Y=None):
    params = [(np.asarray(W, dtype=np.float64), np.asarray(b, dtype=np.float64)) for W, b in params]
    X = np.asarray(X, dtype=np.float64)
    if Y is None:
        return params, X
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:  # a 1-D y of length B is accepted where n_L == 1
        Y = Y[:, None]
    return params, X, Y


# -- forward ----------------------------------------------------------------


def forward(params, activations, X):
    """X (B, n_0) -> (Zs, As): Zs[l-1] = Z_l (B, n_l) for l = 1..L, As[l] = A_l with As[0] = X.

    docs/math.md: A_0 = X;  Z_l = A_{l-1} W_l^T + b_l;  A_l = f_l(Z_l).
    """
    params, X = _as_float64(params, X)
    assert len(params) == len(activations)
    Zs, As = [], [X]
    for (W, b), name in zip(params, activations):
        Z = As[-1] @ W.T + b
        Zs.append(Z)
        As.append(ACTIVATIONS[name](Z))
    return Zs, As


def predict(params, activations, X):
    """X (B, n_0) -> A_L (B, n_L). docs/math.md: the forward pass."""
    return forward(params, activations, X)[1][-1]


# -- losses and cost --------------------------------------------------------


def record_losses(Z_L, A_L, Y, loss):
    """Z_L, A_L, Y (B, n_L) -> L (B,): each record's loss, summed over the output units.

    docs/math.md: BCE L = sum_k [ max(z,0) - z y + log(1 + e^{-|z|}) ]  (from the logits);
             MSE L = sum_k (a_k - y_k)^2.
    """
    if loss == "bce":
        return np.sum(np.maximum(Z_L, 0.0) - Z_L * Y + np.log1p(np.exp(-np.abs(Z_L))), axis=1)
    if loss == "mse":
        return np.sum((A_L - Y) ** 2, axis=1)
    if loss == "cce":  # L = - sum_k y_k log a_k, log a from the logits
        return -np.sum(Y * log_softmax(Z_L), axis=1)
    raise ValueError(f"unknown loss {loss!r}")


def cost(params, activations, loss, X, Y):
    """X (B, n_0), Y (B, n_L) -> C (float). docs/math.md: C = (1/B) sum_over_records L."""
    params, X, Y = _as_float64(params, X, Y)
    Zs, As = forward(params, activations, X)
    return float(np.mean(record_losses(Zs[-1], As[-1], Y, loss)))


# -- backward ---------------------------------------------------------------


def output_delta(A_L, Y, activation, loss):
    """A_L, Y (B, n_L) -> dZ_L (B, n_L) = dC/dZ_L * B (per record, before averaging).

    docs/math.md:  BCE + sigmoid    dZ_L = A_L - Y
              MSE + identity   dZ_L = 2 (A_L - Y)
              MSE + other f    dZ_L = 2 (A_L - Y) * f'(Z_L)
    """
    if loss == "bce":
        if activation != "sigmoid":
            raise ValueError("BCE needs a sigmoid output")
        return A_L - Y
    if loss == "mse":
        return 2.0 * (A_L - Y) * DERIVATIVES[activation](A_L)  # f' = 1 for identity
    if loss == "cce":
        if activation != "softmax":
            raise ValueError("CCE needs a softmax output")
        # The chain rule through the softmax Jacobian da_k/dz_j = a_k ([j = k] - a_j)
        # and dL/da_k = -y_k / a_k, summed in closed form: dZ_j = a_j sum_k y_k - y_j
        # (the A - Y of chainrule's fused delta only where rows sum to 1).
        return A_L * Y.sum(axis=1, keepdims=True) - Y
    raise ValueError(f"unknown loss {loss!r}")


def gradients(params, activations, loss, X, Y):
    """X (B, n_0), Y (B, n_L) -> [(dW_1 (n_1, n_0), db_1 (n_1,)), ..., (dW_L, db_L)]: the gradient of C.

    docs/math.md, for l = L down to 1 with the weights as they are (not yet updated):
        dW_l     = (1/B) dZ_l^T A_{l-1}
        db_l     = (1/B) sum_over_records dZ_l
        dZ_{l-1} = (dZ_l W_l) * f'_{l-1}(Z_{l-1})     (only for l > 1)
    """
    params, X, Y = _as_float64(params, X, Y)
    num_records = X.shape[0]
    Zs, As = forward(params, activations, X)
    dZ = output_delta(As[-1], Y, activations[-1], loss)
    grads = [None] * len(params)
    for l in range(len(params), 0, -1):  # l is docs/math.md's 1-based layer index
        W, _ = params[l - 1]
        dW = dZ.T @ As[l - 1] / num_records
        db = dZ.sum(axis=0) / num_records
        grads[l - 1] = (dW, db)
        if l > 1:
            dZ = (dZ @ W) * DERIVATIVES[activations[l - 2]](As[l - 1])
    return grads


# -- SGD --------------------------------------------------------------------


def sgd_step(params, activations, loss, X, Y, lr):
    """One step on the batch X (B, n_0), Y (B, n_L) -> (new params, C before the step).

    docs/math.md: W_l <- W_l - lr * dW_l;  b_l <- b_l - lr * db_l  (all from the old parameters).
    """
    params, X, Y = _as_float64(params, X, Y)
    grads = gradients(params, activations, loss, X, Y)
    batch_cost = cost(params, activations, loss, X, Y)
    new_params = [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(params, grads)]
    return new_params, batch_cost


def fit(params, activations, loss, X, Y, epochs, lr, batch_size):
    """In-order mini-batch SGD on X (N, n_0), Y (N, n_L) -> (final params, costs (epochs,)).

    docs/math.md: batches of batch_size records in order, the last one possibly
    smaller; an epoch's cost is the mean over its records of their losses taken
    before their batch's update, i.e. the batch costs weighted by batch size.
    """
    params, X, Y = _as_float64(params, X, Y)
    num_records = X.shape[0]
    costs = []
    for _ in range(epochs):
        weighted_sum = 0.0
        for start in range(0, num_records, batch_size):
            batch = slice(start, min(start + batch_size, num_records))
            params, batch_cost = sgd_step(params, activations, loss, X[batch], Y[batch], lr)
            weighted_sum += batch_cost * (batch.stop - batch.start)
        costs.append(weighted_sum / num_records)
    return params, np.array(costs)


# -- comparing results ------------------------------------------------------


def relative_error(actual, expected):
    """||actual - expected|| / ||expected|| in float64 (0 when both are 0).

    A norm over the whole array, so that an entry near zero (a gradient where
    terms cancel) does not turn last-bit differences into a large ratio.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = np.linalg.norm(expected)
    difference = np.linalg.norm(actual - expected)
    return float(difference / scale) if scale > 0 else float(difference)
