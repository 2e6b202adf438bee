"""Hide installed packages from this Python, as if they were not installed.

``make test`` puts this folder on ``PYTHONPATH`` with
``CRYOEM_DENOISE_HIDE_MODULES=tensorflow`` to run the JAX tests, and every process they
start, on a machine that has TensorFlow too: any import of a hidden package (and
``importlib.util.find_spec`` of it) fails with ModuleNotFoundError.
"""

import os
import sys


class _HiddenModules:
    def __init__(self, names):
        self.names = frozenset(names)

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden for the tests)",
                                      name=name)
        return None


_names = [n for n in os.environ.get("CRYOEM_DENOISE_HIDE_MODULES", "").split(",") if n]
if _names:
    sys.meta_path.insert(0, _HiddenModules(_names))
