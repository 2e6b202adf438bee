"""Worker processes that end with their parent.

A pool's workers outlive a parent killed with SIGKILL (a cluster's out-of-memory killer, a
user's ``kill -9``): they block on the pipe to a parent that is gone. :func:`end_with_parent`
(a pool initializer) makes each worker die with it: on Linux the kernel sends it SIGKILL
when the process that started it ends (``prctl(PR_SET_PDEATHSIG)``), and everywhere a
daemon thread checks every second that the original parent still runs.
"""

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

from threadpoolctl import threadpool_limits

__all__ = ["end_with_parent", "init_worker"]

_PR_SET_PDEATHSIG = 1


def _parent_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's (a reused pid)
        return True
    return True


def _watch(pid, interval):
    while _parent_alive(pid):
        time.sleep(interval)
    os._exit(1)


def end_with_parent(parent_pid, interval=1.0):
    """Make this (worker) process end when ``parent_pid`` ends.

    Parameters
    ----------
    parent_pid : int
        The process whose end this one must not outlive (the pool's owner, which may not
        be the direct parent: a fork server starts the workers of some pools).
    interval : float
        Seconds between checks of the watchdog thread.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no libc to call: the watchdog still works
            pass
    if not _parent_alive(parent_pid):
        os._exit(1)
    threading.Thread(target=_watch, args=(parent_pid, interval), daemon=True,
                     name="end-with-parent").start()


def init_worker(parent_pid, blas_threads=None):
    """A pool initializer: end with ``parent_pid`` (:func:`end_with_parent`) and use at most
    ``blas_threads`` BLAS threads (the pool already fills the cores).

    It lives in this light module so that a spawned worker runs it at once, before the
    work's own (heavy) modules are imported.
    """
    end_with_parent(parent_pid)
    if blas_threads:
        threadpool_limits(limits=blas_threads)
