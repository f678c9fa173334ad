"""Multi-class digits: chainrule's MLPClassifier beside scikit-learn's, loss curves to a PNG.

Trains both on scikit-learn's bundled digits (1797 8x8 images, 10 classes),
the same 64-64-10 architecture and 100 epochs, prints their test accuracy
and training time, and plots both loss curves side by side.

    pip install '.[examples]'   # scikit-learn and matplotlib
    python python/examples/digits.py [output.png]

chainrule trains a softmax output with categorical cross-entropy by plain
SGD; scikit-learn's MLPClassifier uses Adam. Both report the mean
cross-entropy of an epoch (scikit-learn adds its small L2 penalty, alpha).
"""

import sys
import time
import warnings

import matplotlib

matplotlib.use("Agg")  # write a file; no display needed
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from chainrule.sklearn import MLPClassifier  # noqa: E402


def main(output: str = "digits_loss_curves.png") -> None:
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

    models = {
        "chainrule (SGD, lr 0.1)": MLPClassifier(hidden_layer_sizes=(64,), max_iter=100, batch_size=32,
                                                 random_state=0, tol=0.0),
        "scikit-learn (Adam, lr 0.001)": SklearnMLPClassifier(hidden_layer_sizes=(64,), max_iter=100, batch_size=32,
                                                              random_state=0, tol=0.0),
    }
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, (name, model) in zip(axes, models.items()):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # 100 epochs on purpose
            model.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        accuracy = model.score(X_test, y_test)
        print(f"{name}: test accuracy {accuracy:.3f}, {model.n_iter_} epochs in {seconds:.2f} s, "
              f"final loss {model.loss_curve_[-1]:.4f}")
        axis.plot(range(1, len(model.loss_curve_) + 1), model.loss_curve_)
        axis.set_yscale("log")
        axis.set_title(f"{name}\ntest accuracy {accuracy:.3f}")
        axis.set_xlabel("epoch")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("training loss (mean cross-entropy)")
    figure.suptitle("digits: 64-64-10 MLP, batches of 32")
    figure.tight_layout()
    figure.savefig(output, dpi=100)
    print(f"wrote {output}")


if __name__ == "__main__":
    main(*sys.argv[1:])
