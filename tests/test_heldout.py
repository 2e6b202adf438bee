import numpy as np
import pytest

from cryoem_denoise.data import datasets

from cryoem_denoise.data import heldout
from cryoem_denoise.config import BROAD_SIMULATION
from cryoem_denoise.errors import ConfigError


@pytest.fixture
def tiny_model(tmp_path):
    """A small atomic model (a 4 x 4 x 4 grid of carbons, 3 Å apart) as a PDB file."""
    lines = []
    for i, (x, y, z) in enumerate(np.ndindex(4, 4, 4)):
        lines.append(f"ATOM  {i + 1:5d}  C   ALA A{i + 1:4d}    {3.0 * x:8.3f}{3.0 * y:8.3f}"
                     f"{3.0 * z:8.3f}  1.00  0.00           C")
    path = tmp_path / "tiny.pdb"
    path.write_text("\n".join(lines) + "\nEND\n")
    return path


def _outside(value, low_high):
    lo, hi = low_high
    return value < lo or value > hi


def test_heldout_fields_are_seeded_cached_and_outside_the_training_draws(tiny_model, tmp_path):
    cache = tmp_path / "cache"
    fields, about = heldout.heldout_fields(4, 64, seed=3, paths={"tiny.pdb": tiny_model},
                                           cache=cache)
    assert len(fields) == 4 and all(f.shape == (64, 64) and f.dtype == np.float32 for f in fields)
    assert all(f.min() == 0 and f.max() == pytest.approx(255) for f in fields)
    for p in about["fields"]:
        assert p["structure"] == "tiny.pdb"
        assert _outside(p["pixel_size"], BROAD_SIMULATION["pixel_size"])
        assert _outside(p["b_factor"], BROAD_SIMULATION["b_factor"])
        assert _outside(p["defocus_um"], BROAD_SIMULATION["defocus_um"])
    assert {p["regime"] for p in about["fields"]} == {"fine", "coarse"}
    assert about["training_ranges"] == BROAD_SIMULATION and about["image_formation"]
    stacks = sorted(cache.glob("*.mrcs"))
    assert len(stacks) == 1 and stacks[0].with_suffix(".fields.json").exists()
    stamp = stacks[0].stat().st_mtime_ns
    again, about_again = heldout.heldout_fields(4, 64, seed=3, paths={"tiny.pdb": tiny_model},
                                                cache=cache)
    assert stacks[0].stat().st_mtime_ns == stamp  # from the cache
    assert all(np.array_equal(a, b) for a, b in zip(fields, again))
    assert about_again["fields"] == about["fields"]
    fresh, _ = heldout.heldout_fields(4, 64, seed=3, paths={"tiny.pdb": tiny_model},
                                      cache=tmp_path / "other")
    assert all(np.array_equal(a, b) for a, b in zip(fields, fresh))  # same seed, same fields
    other, _ = heldout.heldout_fields(4, 64, seed=4, paths={"tiny.pdb": tiny_model}, cache=cache)
    assert not np.array_equal(fields[0], other[0])


def test_heldout_refuses_training_structures_and_bad_sizes(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="is a training structure"):
        heldout.heldout_fields(2, 64, structures=["mmcif_6zu5.cif"], cache=tmp_path)
    with pytest.raises(ConfigError, match="training structure"):
        heldout.heldout_fields(2, 64, paths={"EMD-3001.map": tiny_model}, cache=tmp_path)
    with pytest.raises(ConfigError, match="at least one field"):
        heldout.heldout_fields(0, 64, paths={"tiny.pdb": tiny_model}, cache=tmp_path)
    with pytest.raises(ConfigError, match="at least 32 pixels"):
        heldout.heldout_fields(2, 16, paths={"tiny.pdb": tiny_model}, cache=tmp_path)


def test_heldout_structures_are_biopython_and_never_trained_on():
    assert len(datasets.HELDOUT_STRUCTURES) >= 2
    for name in datasets.HELDOUT_STRUCTURES:
        assert datasets.SAMPLES[name].source.package == "biopython"
        assert name not in datasets.TRAINING_STRUCTURES
