"""The optimizers' cost: chainrule's training speed with SGD, momentum, Adam and dropout, and torch's with the same.

    python -m chainrule.bench.optimizers                     # W1 W2 W4, 1 and 2 threads, float32
    python -m chainrule.bench.optimizers --workloads W4 --threads 1 --rounds 3

For each workload and thread count it trains the benchmark's workload (its
data and initial weights: chainrule.bench.workloads) for about --seconds
with each optimizer, records in order, and prints samples per second, the
ratio to plain SGD of the same run, and, with torch installed, the ratio to
torch.optim with the same optimizer. The variants run in turns, one round
after another, and each figure is the best of its rounds, so that a machine
whose speed drifts affects them alike.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .workloads import BY_NAME, initial_params, make_data

VARIANTS = {  # name: (chainrule fit arguments, torch optimizer, torch dropout)
    "sgd": (lambda w: dict(lr=w.lr), lambda p, w: ("SGD", dict(lr=w.lr)), 0.0),
    "momentum": (lambda w: dict(optimizer=("SGD", dict(lr=w.lr, momentum=0.9))),
                 lambda p, w: ("SGD", dict(lr=w.lr, momentum=0.9)), 0.0),
    "adam": (lambda w: dict(optimizer=("Adam", dict(lr=1e-3))), lambda p, w: ("Adam", dict(lr=1e-3)), 0.0),
    "dropout": (lambda w: dict(lr=w.lr, dropout=0.2), lambda p, w: ("SGD", dict(lr=w.lr)), 0.2),
}


def chainrule_rate(workload, variant, X, Y, weights, biases, seconds):
    import chainrule as cr

    net = cr.Network(list(workload.layer_sizes), activation=workload.hidden, output=workload.output,
                     loss=workload.loss, dtype=X.dtype)
    for view, value in zip(net.weights + net.biases, weights + biases):
        view[...] = value
    arguments = dict(VARIANTS[variant][0](workload))
    if variant == "dropout" and len(workload.layer_sizes) == 2:
        return None  # no hidden layer to drop
    if "optimizer" in arguments:
        name, settings = arguments.pop("optimizer")
        arguments["optimizer"] = getattr(cr.optim, name)(**settings)
    batch = workload.batch_size
    net.fit(X[:workload.warmup_records], Y[:workload.warmup_records], epochs=1, batch_size=batch, shuffle=False,
            **arguments)
    epochs, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        net.fit(X, Y, epochs=epochs, batch_size=batch, shuffle=False, seed=0, **arguments)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return epochs * len(X) / elapsed
        epochs = max(epochs * 2, int(epochs * seconds / max(elapsed, 1e-3)) + 1)


def torch_rate(workload, variant, X, Y, weights, biases, seconds):
    import torch

    if variant == "dropout" and len(workload.layer_sizes) == 2:
        return None
    dtype = torch.float32 if X.dtype == np.float32 else torch.float64
    layers = []
    activations = {"sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh, "relu": torch.nn.ReLU,
                   "identity": torch.nn.Identity}
    rate = VARIANTS[variant][2]
    for l, (W, b) in enumerate(zip(weights, biases)):
        linear = torch.nn.Linear(W.shape[1], W.shape[0]).to(dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if l < len(weights) - 1:
            layers.append(activations[workload.hidden]())
            if rate:
                layers.append(torch.nn.Dropout(rate))
    model = torch.nn.Sequential(*layers)
    name, settings = VARIANTS[variant][1](model.parameters(), workload)
    optimizer = getattr(torch.optim, name)(model.parameters(), **settings)
    loss = (torch.nn.BCEWithLogitsLoss(reduction="sum") if workload.loss == "bce"
            else torch.nn.MSELoss(reduction="sum"))
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    batch = workload.batch_size

    def epoch():
        for start in range(0, len(X), batch):
            x, y = Xt[start:start + batch], Yt[start:start + batch]
            optimizer.zero_grad()
            out = model(x)
            if workload.output == "sigmoid" and workload.loss == "mse":
                out = torch.sigmoid(out)
            (loss(out, y) / len(x)).backward()
            optimizer.step()

    epoch()
    epochs, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(epochs):
            epoch()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return epochs * len(X) / elapsed
        epochs = max(epochs * 2, int(epochs * seconds / max(elapsed, 1e-3)) + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=["W1", "W2", "W4"], choices=sorted(BY_NAME))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--no-torch", action="store_true", help="chainrule alone")
    options = parser.parse_args()

    import importlib.util

    import chainrule as cr

    with_torch = not options.no_torch and importlib.util.find_spec("torch") is not None
    dtype = np.dtype(options.dtype)
    best = {}
    for _ in range(options.rounds):
        for name in options.workloads:
            workload = BY_NAME[name]
            X, Y = make_data(workload, workload.num_records, dtype)
            weights, biases = initial_params(workload, dtype)
            for threads in options.threads:
                cr.set_num_threads(threads)
                if with_torch:
                    import torch
                    torch.set_num_threads(threads)
                for variant in options.variants:
                    for impl, rate_of in [("chainrule", chainrule_rate)] + ([("torch", torch_rate)] if with_torch
                                                                          else []):
                        rate = rate_of(workload, variant, X, Y, weights, biases, options.seconds)
                        key = (name, threads, variant, impl)
                        if rate is not None:
                            best[key] = max(best.get(key, 0.0), rate)
    print(f"{options.dtype}, best of {options.rounds} rounds, samples/s (records in order)")
    print("| workload | threads | optimizer | chainrule | x plain SGD | torch | chainrule / torch |")
    print("|---|---|---|---|---|---|---|")
    for name in options.workloads:
        for threads in options.threads:
            for variant in options.variants:
                ours = best.get((name, threads, variant, "chainrule"))
                if ours is None:
                    continue
                plain = best.get((name, threads, "sgd", "chainrule"))
                theirs = best.get((name, threads, variant, "torch"))
                print(f"| {name} | {threads} | {variant} | {ours:,.0f} | "
                      f"{ours / plain if plain else float('nan'):.3f} | "
                      f"{f'{theirs:,.0f}' if theirs else 'n/a'} | "
                      f"{f'{ours / theirs:.2f}x' if theirs else 'n/a'} |")


if __name__ == "__main__":
    main()
