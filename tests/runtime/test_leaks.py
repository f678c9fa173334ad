"""Memory stays flat over many cycles, and readers never see torn parameters.

Leaks: 10,000 create/fit/predict/cost/gradients/sgd_step/save/load/copy/pickle
cycles, with the error paths taken too (bad dtype, NaN input, damaged file,
divergence, a raising callback), run in a child process; its resident set
size (from /proc/self/statm) after a warm-up and at the end may differ by
less than 20 MiB. The networks are large enough (tens of KiB with their
workspace) that leaking one per cycle would show many times over.

Threads: network.hpp documents that a predict or cost overlapping a fit waits
for a step boundary, so it never sees a half-done update. tests/runtime/test_threads.py
checks that such predictions are finite and that fit is unaffected; here every
value a reader sees while fit runs (predict, cost, a copy, a saved file, a
pickle) must be exactly the value at one of the step boundaries of the same
training replayed step by step with sgd_step, and the boundaries must be seen
in order.
"""

import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
import threading

import numpy as np
import pytest

import chainrule as cr

CYCLES = 10_000
WARM_UP = 500
GROWTH_LIMIT_MIB = 20

CYCLER = textwrap.dedent("""
    import os, pickle, sys
    import numpy as np
    import chainrule as cr

    directory, cycles, warm_up = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    page = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    rng = np.random.default_rng(0)
    data = {}
    for dtype in ("float32", "float64"):
        X = np.ascontiguousarray(rng.standard_normal((32, 24)), dtype=dtype)
        y = np.ascontiguousarray(rng.random((32, 2)) < 0.5, dtype=dtype)
        data[dtype] = (X, y, np.ascontiguousarray(X * 1e30), np.ascontiguousarray(X.astype("float16")))
    path = os.path.join(directory, "model.crnn")
    damaged = os.path.join(directory, "damaged.crnn")

    def stop(epoch, cost):
        raise KeyError("stop")

    def cycle(i):
        dtype = ("float32", "float64")[i % 2]
        X, y, huge, wrong = data[dtype]
        net = cr.Network([24, 32, 2], activation=("tanh", "relu")[i % 3 == 0], dtype=dtype, seed=i)
        net.fit(X, y, epochs=1, lr=0.1, batch_size=16, seed=i)
        net.predict(X)
        net.cost(X, y)
        net.gradients(X, y)
        net.sgd_step(X, y, 0.05)
        net.save(path)
        loaded = cr.Network.load(path)
        loaded.copy().predict(X[:4])
        pickle.loads(pickle.dumps(loaded))
        for bad_call in (lambda: net.predict(wrong), lambda: net.fit(X[:0], y[:0]),
                         lambda: net.fit(X, y, epochs=2, callback=stop),
                         lambda: net.sgd_step(huge, y, 1e30), lambda: cr.Network.load(damaged),
                         lambda: cr.Network([24, 2**40, 2])):
            try:
                bad_call()
            except (TypeError, ValueError, KeyError, MemoryError, FloatingPointError):
                pass

    with open(path, "wb"):
        pass
    cr.Network([3, 1], seed=0).save(damaged)
    with open(damaged, "r+b") as f:
        f.seek(30)
        f.write(b"\\xff")
    for i in range(warm_up):
        cycle(i)
    before = rss()
    for i in range(cycles):
        cycle(warm_up + i)
    after = rss()
    print(before, after)
""")


def scratch_directory():
    """tmpfs where there is one: a save flushes to disk, and 10,000 flushes take minutes there."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc/self/statm (Linux)")
def test_ten_thousand_cycles_keep_memory_flat():
    with tempfile.TemporaryDirectory(dir=scratch_directory()) as directory:
        done = subprocess.run([sys.executable, "-c", CYCLER, directory, str(CYCLES), str(WARM_UP)],
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    before, after = map(int, done.stdout.split())
    growth_mib = (after - before) / 2**20
    print(f"\nRSS after {WARM_UP} warm-up cycles: {before / 2**20:.1f} MiB; after {CYCLES} more: "
          f"{after / 2**20:.1f} MiB ({growth_mib:+.2f} MiB)")
    assert growth_mib < GROWTH_LIMIT_MIB, f"RSS grew by {growth_mib:.1f} MiB over {CYCLES} cycles"


# -- readers during fit ---------------------------------------------------------------------------

# One record per step: the parameter update is then a large part of each step,
# the window in which an unguarded reader would see a half-done update.
NUM_RECORDS, BATCH, EPOCHS, LR = 2000, 1, 3, 0.1


def training_setup():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((NUM_RECORDS, 64))
    y = (rng.random((NUM_RECORDS, 1)) < 0.5).astype(np.float64)
    net = cr.Network([64, 64, 1], activation="tanh", seed=6)
    return net, X, y


def step_boundaries(net, X, y, probe_X, probe_y):
    """{predict(probe_X) bytes: step} and {cost(probe_X, probe_y): step} at every step boundary
    of fit(shuffle=False), replayed on a copy with sgd_step (bitwise the same steps)."""
    twin = net.copy()
    by_prediction = {twin.predict(probe_X).tobytes(): 0}
    by_cost = {twin.cost(probe_X, probe_y): 0}
    step = 0
    for _ in range(EPOCHS):
        for start in range(0, NUM_RECORDS, BATCH):
            twin.sgd_step(X[start:start + BATCH], y[start:start + BATCH], LR)
            step += 1
            by_prediction.setdefault(twin.predict(probe_X).tobytes(), step)
            by_cost.setdefault(twin.cost(probe_X, probe_y), step)
    return by_prediction, by_cost, twin


def observe_during_fit(net, X, y, read):
    """Runs fit in this thread and read() in a loop in another; returns what was read."""
    seen, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(read())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        history = net.fit(X, y, epochs=EPOCHS, lr=LR, batch_size=BATCH, shuffle=False)
    finally:
        stop.set()
        watcher.join()
    return seen, history


def assert_whole_steps_in_order(steps, what):
    unknown = sum(step is None for step in steps)
    assert unknown == 0, f"{unknown} of {len(steps)} {what} read during fit match no step boundary (torn parameters)"
    assert steps == sorted(steps), f"{what} went back in time: {steps[:50]}"
    assert len(set(steps)) >= 2, f"{what} saw only steps {sorted(set(steps))}: readers were never let in"


def test_predict_and_cost_during_fit_see_whole_steps_in_order():
    net, X, y = training_setup()
    probe_X, probe_y = X[:5].copy(), y[:5].copy()
    by_prediction, by_cost, twin = step_boundaries(net, X, y, probe_X, probe_y)

    def read():
        return net.predict(probe_X).tobytes(), net.cost(probe_X, probe_y)

    seen, history = observe_during_fit(net, X, y, read)
    prediction_steps = [by_prediction.get(p) for p, _ in seen]
    cost_steps = [by_cost.get(c) for _, c in seen]
    assert_whole_steps_in_order(prediction_steps, "predictions")
    assert_whole_steps_in_order(cost_steps, "costs")
    for p_step, c_step in zip(prediction_steps, cost_steps):
        assert p_step <= c_step  # cost was read after predict
    # And training itself ended exactly where the serial replay did.
    assert net.predict(X).tobytes() == twin.predict(X).tobytes()
    assert np.all(np.isfinite(history))


def test_copy_and_save_during_fit_capture_whole_steps():
    net, X, y = training_setup()
    probe_X, probe_y = X[:5].copy(), y[:5].copy()
    by_prediction, _, _ = step_boundaries(net, X, y, probe_X, probe_y)
    with tempfile.TemporaryDirectory(dir=scratch_directory()) as directory:
        counter = iter(range(10**9))

        def read():
            i = next(counter)
            if i % 2:
                return net.copy()
            path = os.path.join(directory, f"{i}.crnn")
            net.save(path)
            return cr.Network.load(path)

        seen, _ = observe_during_fit(net, X, y, read)
        steps = [by_prediction.get(copy.predict(probe_X).tobytes()) for copy in seen]
    assert_whole_steps_in_order(steps, "copies and saved files")


PICKLE_ROUNDS = 6


def test_pickle_during_fit_captures_whole_steps():
    # pickle (and __getstate__) must snapshot the parameters like copy() does,
    # not read them while a step is writing them. A torn read needs a pickle
    # to overlap an update, which one round of training catches about every
    # other time: up to PICKLE_ROUNDS rounds, stopping at the first torn one.
    net, X, y = training_setup()
    probe_X, probe_y = X[:5].copy(), y[:5].copy()
    by_prediction, _, _ = step_boundaries(net, X, y, probe_X, probe_y)
    for _ in range(PICKLE_ROUNDS):
        fresh = net.copy()
        seen, _ = observe_during_fit(fresh, X, y, lambda: pickle.dumps(fresh))
        steps = [by_prediction.get(pickle.loads(blob).predict(probe_X).tobytes()) for blob in seen]
        if None in steps:
            break
    assert_whole_steps_in_order(steps, "pickles")
