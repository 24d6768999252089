"""The scikit-learn functions nntrain calls, by name, so that another process can answer them.

Importing scikit-learn costs ~0.7 s on a 2-core VM (it imports SciPy's stats), as much as a
default digits run spends training. ``nntrain train`` starts a helper process as it starts
(``pipeline.sklearn_helper``) that imports scikit-learn on the core its start-up leaves idle,
and installs it here with ``set_remote``: the same function then runs there on the same
arguments and its result comes back pickled, so the command's own process never imports
scikit-learn. Without a helper, or when it cannot answer, the call runs in this process; an
exception the function raises there (e.g. ``train_test_split``'s ValueError) is raised here.
"""

from __future__ import annotations

from typing import Any, Callable

Remote = Callable[[str, tuple, dict], Any]
_remote: Remote | None = None


class Unavailable(Exception):
    """The remote could not answer (not started, died, hung): the call runs in this process."""


def set_remote(remote: Remote | None) -> None:
    """Answer ``call`` with ``remote(name, args, kwargs)`` (None: in this process again)."""
    global _remote
    _remote = remote


def call(name: str, *args: Any, **kwargs: Any) -> Any:
    """``FUNCTIONS[name](*args, **kwargs)``, in the helper process when one is installed."""
    if _remote is not None:
        try:
            return _remote(name, args, kwargs)
        except Unavailable:
            pass
    return FUNCTIONS[name](*args, **kwargs)


def load_digits() -> tuple[Any, Any, list[Any]]:
    """scikit-learn's embedded digits: (images (n, 8, 8), target (n,), target names)."""
    from sklearn.datasets import load_digits as load

    bunch = load()  # ships inside scikit-learn: nothing is downloaded
    return bunch.images, bunch.target, list(bunch.target_names)


def train_test_split(*arrays: Any, **kwargs: Any) -> list[Any]:
    from sklearn.model_selection import train_test_split as split

    return split(*arrays, **kwargs)


def confusion_matrix(*args: Any, **kwargs: Any) -> Any:
    from sklearn.metrics import confusion_matrix as cm

    return cm(*args, **kwargs)


def precision_recall_fscore_support(*args: Any, **kwargs: Any) -> Any:
    from sklearn.metrics import precision_recall_fscore_support as prfs

    return prfs(*args, **kwargs)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    f.__name__: f for f in (load_digits, train_test_split, confusion_matrix, precision_recall_fscore_support)
}


def import_all() -> None:
    """What the helper imports before its first call."""
    import sklearn.datasets  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import sklearn.model_selection  # noqa: F401
