"""Execute the notebooks in place with their full settings (outputs are committed).

Usage: .venv/bin/python scripts/run_notebooks.py [NAME ...]   (default: all four)
Intermediate results go to $CRYOEM_NB_OUT (default: a temporary folder).
"""

import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1] / "notebooks"


def main(names):
    os.environ.setdefault("CRYOEM_NB_OUT", tempfile.mkdtemp(prefix="nb-results-"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    paths = [ROOT / f"{n}.ipynb" for n in names] if names else sorted(ROOT.glob("*.ipynb"))
    for path in paths:
        started = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=3600, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT)}}).execute()
        nbformat.write(nb, path)
        print(f"{path.name}: {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
