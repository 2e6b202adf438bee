"""The notebooks run end to end with small settings (CRYOEM_NB_SMALL=1)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.backends  # also run on JAX by make test

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def test_all_four_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == ["01_mrc_and_noise", "02_training", "03_methods",
                                           "04_noise_levels"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch, tiny_model):
    monkeypatch.setenv("CRYOEM_NB_SMALL", "1")
    monkeypatch.setenv("CRYOEM_NB_OUT", str(tmp_path / "results"))
    monkeypatch.setenv("CRYOEM_NB_MODEL", str(tiny_model))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # it drew its figures
