"""Progress bars (tqdm) with one look for every long job.

On a terminal the bar updates a few times a second; written to a log file (CI, batch jobs)
it updates every 15 seconds so logs stay readable. Rate and ETA come from tqdm.
"""

import sys

from tqdm import tqdm


def progress_bar(total, desc, unit, enabled=True, initial=0):
    """A tqdm bar on stderr, or a disabled one when ``enabled`` is false."""

    interval = 0.2 if sys.stderr.isatty() else 15.0
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled,
                dynamic_ncols=True, mininterval=interval)
