"""A golden set: the bits a build computes on a few dozen networks, to show a refactoring changed none.

    python bench/golden.py record golden.npz     # on the code before the change
    python bench/golden.py compare golden.npz    # on the code after it: exits 1 on any difference

Every activation (hidden and output) x loss x dtype that the library accepts,
depth 1 to 4, batches of 1, 7 and 64 records, shuffled and in order (the
fused one-record paths included): the epoch costs, the final parameters,
`predict`, `cost`, `gradients`, one `sgd_step`, and the bytes of the saved
model file. The golden data depend on the CPU and the OpenBLAS kernel, so
record and compare on one machine with one build configuration; the data
are not kept in the repository, this script is.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile

import numpy as np


def cases():
    """(name, layer sizes, hidden activation, output activation, loss, dtype, batch size, shuffle)."""
    import chainrule as cr

    hidden_names = ["sigmoid", "tanh", "relu", "identity"]
    pairs = [("sigmoid", "bce"), ("sigmoid", "mse"), ("identity", "mse"), ("tanh", "mse"), ("relu", "mse"),
             ("softmax", "cce")]
    shapes = {1: [9], 2: [9, 13], 3: [9, 13, 6], 4: [9, 11, 7, 5]}
    out = []
    for k, ((output, loss), dtype) in enumerate(itertools.product(pairs, ["float32", "float64"])):
        for j in range(4):  # four networks per output, loss and dtype: depth, batch and order taken in turn
            i = 4 * k + j
            depth, batch, shuffle = (i % 4) + 1, [1, 7, 64][i % 3], i % 2 == 0
            hidden = hidden_names[i % len(hidden_names)]
            n_out = 3 if loss == "cce" else 1 + (i % 3) // 2
            sizes = shapes[depth] + [n_out]
            order = "shuffled" if shuffle else "ordered"
            out.append((f"{i:02d}-{hidden}-{output}-{loss}-{dtype}-d{depth}-b{batch}-{order}", sizes, hidden, output,
                        loss, dtype, batch, shuffle))
    # The fused one-record paths and the deferred BCE losses: one layer, batch 1, both dtypes.
    for dtype, (output, loss), shuffle in itertools.product(["float32", "float64"],
                                                            [("sigmoid", "bce"), ("identity", "mse"),
                                                             ("tanh", "mse")], [True, False]):
        out.append((f"fused-{output}-{loss}-{dtype}-{'shuffled' if shuffle else 'ordered'}", [30, 1], "sigmoid",
                    output, loss, dtype, 1, shuffle))
    # Activations added since the set was first recorded: cases of their own,
    # appended, so that the cases above stay as they were.
    for name in [a for a in getattr(cr, "ACTIVATIONS", ()) if a not in hidden_names + ["softmax"]]:
        for dtype in ["float32", "float64"]:
            out.append((f"{name}-{dtype}", [9, 13, 6, 2], name, name, "mse", dtype, 7, True))
    # Products large enough to be tiled across threads.
    for dtype in ["float32", "float64"]:
        out.append((f"tiled-{dtype}", [300, 256, 64, 10], "tanh", "sigmoid", "bce", dtype, 128, True))
    # The small layers' kernels (kernels/small_linear.cpp): the benchmark's W2 and W3, batches of 32 and 64.
    for dtype in ["float32", "float64"]:
        for batch in [32, 64]:
            out.append((f"w2-{dtype}-b{batch}", [30, 16, 1], "sigmoid", "sigmoid", "bce", dtype, batch, True))
            out.append((f"w3-{dtype}-b{batch}", [10, 32, 1], "sigmoid", "identity", "mse", dtype, batch, True))
    return out


def data(sizes, loss, dtype, n=200, seed=0):
    rng = np.random.default_rng([seed, *sizes])
    X = rng.standard_normal((n, sizes[0]))
    if loss == "bce":
        y = (rng.random((n, sizes[-1])) < 0.5).astype(float)
    elif loss == "cce":
        y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], n)]
    else:
        y = rng.standard_normal((n, sizes[-1]))
    return np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(y, dtype=dtype)


def run(case) -> dict:
    import chainrule as cr

    name, sizes, hidden, output, loss, dtype, batch, shuffle = case
    X, y = data(sizes, loss, dtype)
    lr = 0.05 if loss != "mse" else 0.01
    net = cr.Network(sizes, activation=hidden, output=output, loss=loss, dtype=dtype, seed=len(name))
    result = {"history": np.asarray(net.fit(X, y, epochs=3, lr=lr, batch_size=batch, shuffle=shuffle, seed=5))}
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        result[f"W{l + 1}"] = w.copy()
        result[f"b{l + 1}"] = b.copy()
    result["predict"] = net.predict(X)
    result["cost"] = np.float64(net.cost(X, y))
    for l, (dw, db) in enumerate(net.gradients(X, y)):
        result[f"dW{l + 1}"] = np.asarray(dw)
        result[f"db{l + 1}"] = np.asarray(db)
    result["sgd_step"] = np.float64(net.sgd_step(X[:batch], y[:batch], lr))
    result["after_step"] = np.concatenate([w.ravel() for w in net.weights] + [b for b in net.biases])
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.crnn")
        net.save(path)
        with open(path, "rb") as f:
            result["model_file"] = np.frombuffer(f.read(), dtype=np.uint8)
    return {f"{name}/{key}": value for key, value in result.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["record", "compare"])
    parser.add_argument("path")
    options = parser.parse_args()
    computed = {}
    for case in cases():
        computed.update(run(case))
    if options.mode == "record":
        np.savez(options.path, **computed)
        print(f"recorded {len(cases())} networks, {len(computed)} arrays, to {options.path}")
        return 0
    golden = np.load(options.path)  # a key the golden set lacks (a case added since) is not compared
    differ = [key for key in golden.files if key not in computed or golden[key].tobytes() != computed[key].tobytes()
              or golden[key].dtype != computed[key].dtype]
    print(f"compared {len(golden.files)} arrays of {len(cases())} networks: {len(differ)} differ")
    for key in differ[:20]:
        print("  differs:", key)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
