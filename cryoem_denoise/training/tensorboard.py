"""Scalar summaries for TensorBoard, written without TensorFlow (on every backend).

Uses the ``tensorboard`` package's event-file writer and protocol buffers, which need no
TensorFlow: a JAX run's logs open in TensorBoard like a TensorFlow run's. TensorBoard loads
TensorFlow for its file I/O whenever it is installed, unless the marker module
``tensorboard.compat.notf`` exists; where TensorFlow is not already running, the marker is
set so that its own stub is used instead.
"""

import sys
import time
import types


class NullWriter:
    """Stands in for :class:`ScalarWriter` where the ``tensorboard`` package is missing."""

    def scalar(self, tag, value, step):
        pass

    def flush(self):
        pass

    def close(self):
        pass


def scalar_writer(logdir):
    """A :class:`ScalarWriter`, or a :class:`NullWriter` without the ``tensorboard`` package
    (the loss CSV holds the same numbers)."""
    try:
        return ScalarWriter(logdir)
    except ImportError:
        return NullWriter()


class ScalarWriter:
    """Append scalars to an event file in ``logdir``."""

    def __init__(self, logdir):
        if "tensorflow" not in sys.modules:
            sys.modules.setdefault("tensorboard.compat.notf",
                                   types.ModuleType("tensorboard.compat.notf"))
        from tensorboard.summary.writer.event_file_writer import (
            EventFileWriter,  # lazy: imports TensorBoard (TensorFlow where installed)
        )

        self._writer = EventFileWriter(str(logdir))

    def scalar(self, tag, value, step):
        from tensorboard.compat.proto import (  # lazy: imports TensorBoard (TensorFlow where installed)
            event_pb2,
            summary_pb2,
        )

        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(
            tag=tag, simple_value=float(value))])
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                               summary=summary))

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()
