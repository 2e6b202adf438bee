"""``warnings.catch_warnings`` for code that may run in more than one thread.

``warnings.catch_warnings`` swaps process-wide state (the filters and ``showwarning``) on
entry and puts it back on exit, so two threads inside such blocks at once can leave the
filters or the recorder of one in place for good (Python < 3.14). ``apply`` reads the next
file in a thread while the model runs the current one, and the readers catch the warnings
of the libraries they call: every such block in the package goes through
:func:`catching_warnings`, which holds one lock for its duration.
"""

import contextlib
import threading
import warnings

__all__ = ["catching_warnings"]

_LOCK = threading.RLock()


@contextlib.contextmanager
def catching_warnings(**kwargs):
    """``warnings.catch_warnings(**kwargs)``, one thread at a time."""
    with _LOCK, warnings.catch_warnings(**kwargs) as caught:
        yield caught
