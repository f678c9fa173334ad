"""Train a 30-16-1 sigmoid network on scikit-learn's breast-cancer data.

The data set (569 records, 30 features, label 1 = benign) ships with
scikit-learn, so nothing is downloaded. The script holds out a stratified
quarter of the records, standardizes the features with the training
statistics only, trains by mini-batch SGD on the binary cross-entropy, and
reports the cost curve, then the accuracy and the cost on the held-out records.

    pip install '.[examples]'
    python python/examples/breast_cancer.py
"""

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

import chainrule as cr

EPOCHS = 50
LEARNING_RATE = 0.5


def main() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)

    # Standardize with the training statistics only: the test records must not
    # leak into the preprocessing.
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    # chainrule reads arrays in place and never converts them: hand it
    # C-contiguous float64 (the network's dtype). The labels are int64 as
    # loaded, so they need the conversion too.
    X_train = np.ascontiguousarray((X_train - mean) / std, dtype=np.float64)
    X_test = np.ascontiguousarray((X_test - mean) / std, dtype=np.float64)
    y_train = np.ascontiguousarray(y_train, dtype=np.float64)
    y_test = np.ascontiguousarray(y_test, dtype=np.float64)

    net = cr.Network([30, 16, 1], activation="sigmoid", output="sigmoid", loss="bce", seed=0)
    history = net.fit(X_train, y_train, epochs=EPOCHS, lr=LEARNING_RATE, batch_size=32, seed=0)

    print(f"{net!r}: {net.n_params} parameters, {len(y_train)} training / {len(y_test)} test records")
    print("epoch   cost (mean BCE over the epoch, taken before each batch's update)")
    for epoch, cost in enumerate(history, start=1):
        if epoch == 1 or epoch % 5 == 0:
            print(f"{epoch:5d}   {cost:.4f}")

    probability = net.predict(X_test)[:, 0]  # sigmoid output: P(label 1)
    correct = int(np.sum((probability > 0.5) == (y_test > 0.5)))
    print(f"test accuracy {correct / len(y_test):.3f} ({correct}/{len(y_test)})")
    print(f"test cost     {net.cost(X_test, y_test):.4f}")


if __name__ == "__main__":
    main()
