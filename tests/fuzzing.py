"""What the fuzz tests share: a time limit that turns a hang into a failing example."""

import contextlib
import signal


class Hang(BaseException):
    """An example that ran past its time limit (not an ``Exception``, so the code under test
    cannot catch it as one of its own errors)."""


@contextlib.contextmanager
def time_limit(seconds):
    """Fail (``AssertionError``, which hypothesis reports and shrinks) when the block runs
    longer than ``seconds`` (SIGALRM; the main thread)."""
    def stop(signum, frame):
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    except Hang as exc:
        raise AssertionError(f"hang: {exc}") from None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
