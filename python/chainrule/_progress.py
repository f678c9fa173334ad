"""Per-epoch progress reports for Network.fit and the scikit-learn estimators.

A tqdm bar when tqdm is installed (it is optional: ``pip install 'chainrule[progress]'``),
plain lines otherwise. The reporter is driven from fit's epoch callback, which
the C++ loop calls between epochs with the GIL held, so it sees exactly the
costs that fit returns as its history.
"""

from __future__ import annotations

import sys

__all__ = ["EpochProgress"]


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


class EpochProgress:
    """Reports epochs ``1..total``: ``update(epoch, cost, validation_score=None)``, then ``close()``.

    ``bar=None`` uses tqdm when it is importable; ``bar=False`` always prints
    lines, in scikit-learn's verbose format (``Iteration 3, loss = 0.12345678``),
    to ``file`` (standard output by default).
    """

    def __init__(self, total: int, description: str = "fit", bar=None, file=None):
        tqdm = _tqdm() if bar is None or bar else None
        if bar and tqdm is None:
            raise ImportError("a progress bar needs tqdm: pip install tqdm (or pass progress='lines')")
        self._file = file
        self._bar = tqdm(total=total, desc=description, unit="epoch", file=file) if tqdm else None

    def update(self, epoch: int, cost: float, validation_score=None) -> None:
        """``epoch`` counts from 0, as fit's callback does; reports are numbered from 1."""
        if self._bar is not None:
            postfix = {"loss": f"{cost:.6g}"}
            if validation_score is not None:
                postfix["validation score"] = f"{validation_score:.6g}"
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(1)
            return
        line = f"Iteration {epoch + 1}, loss = {cost:.8f}"
        if validation_score is not None:
            line += f", validation score = {validation_score:.6f}"
        print(line, file=self._file if self._file is not None else sys.stdout, flush=True)

    def message(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self._file)
        else:
            print(text, file=self._file if self._file is not None else sys.stdout, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
