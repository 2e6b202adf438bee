import mrcfile
import numpy as np
import pytest
from click.testing import CliRunner

from cryoem_denoise.io import image_io, mrc

from cryoem_denoise.data import noise

from cryoem_denoise.data import simulate
from cryoem_denoise.cli import cli
from cryoem_denoise.config import SimulationConfig
from cryoem_denoise.errors import ConfigError, InputError


@pytest.fixture
def blob_map(tmp_path):
    """A small positive density (two blobs) as an MRC volume, 1 Å voxels."""
    rng = np.random.default_rng(0)
    vol = np.zeros((9, 11, 13), np.float32)
    vol[2:7, 3:8, 4:9] = rng.uniform(0.5, 2.0, (5, 5, 5))
    vol[4, 5, 10] = 3.0
    path = tmp_path / "blob.map"
    mrc.write_mrc(path, vol, voxel_size=(1.0, 1.0, 1.0), kind="volume")
    return path, vol


def test_projection_of_a_known_density_is_the_direct_sum(blob_map):
    path, vol = blob_map
    cloud = simulate.load_structure(path, threshold=0.0)
    shape = vol.shape[1:]
    centre = ((shape[0] - 1) / 2, (shape[1] - 1) / 2)
    proj = simulate.project(cloud, np.eye(3), 1.0, shape, centre)
    np.testing.assert_allclose(proj, vol.sum(axis=0), rtol=1e-6, atol=1e-6)
    # a quarter turn about z turns the projection by 90 degrees (square grid needed)
    rot = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], float)
    big = (15, 15)
    a = simulate.project(cloud, np.eye(3), 1.0, big, (7, 7))
    b = simulate.project(cloud, rot, 1.0, big, (7, 7))
    np.testing.assert_allclose(np.rot90(a, -1), b, atol=1e-6)  # x -> y: clockwise in (row, col)


def test_ctf_zeros_where_theory_puts_them():
    cfg = SimulationConfig(amplitude_contrast=0.0, cs_mm=0.0, b_factor=0.0)
    lam = simulate.wavelength(300)
    assert lam == pytest.approx(0.019687, abs=1e-5)
    defocus = 15000.0
    zeros = np.sqrt(np.arange(1, 6) / (lam * defocus))
    np.testing.assert_allclose(simulate.ctf(zeros, defocus, cfg), 0, atol=1e-9)
    between = np.sqrt((np.arange(1, 6) - 0.5) / (lam * defocus))
    assert np.all(np.abs(simulate.ctf(between, defocus, cfg)) > 0.99)
    # with spherical aberration the zeros move to where chi(k) = n pi
    cfg_cs = SimulationConfig(amplitude_contrast=0.0, cs_mm=2.7, b_factor=0.0)
    cs = 2.7e7
    k = np.linspace(0.01, 0.3, 20000)
    chi = np.pi * lam * defocus * k ** 2 - 0.5 * np.pi * cs * lam ** 3 * k ** 4
    first = k[np.argmin(np.abs(chi - np.pi))]
    assert abs(simulate.ctf(np.array([first]), defocus, cfg_cs)[0]) < 1e-3
    # the 2D CTF is the radial one along any direction when there is no astigmatism
    h = simulate.ctf_2d((64, 64), 2.0, defocus, cfg)
    kx = np.fft.rfftfreq(64, d=2.0)
    np.testing.assert_allclose(h[0], simulate.ctf(kx, defocus, cfg))


def test_fields_are_reproducible_in_range_and_separated(blob_map):
    path, _ = blob_map
    cfg = SimulationConfig(pixel_size=1.0, field=96, particles=4, defocus_um=(0.5, 1.0))
    sim = simulate.Simulator(simulate.load_structure(path, threshold=0.0), cfg)
    a, params = sim.fields(3, seed=5)
    b, _ = sim.fields(3, seed=5)
    c, _ = sim.fields(3, seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.shape == (3, 96, 96)
    assert a.min() == 0 and a.max() == pytest.approx(255)
    assert all(0.5 <= p["defocus_um"] <= 1.0 and p["particles"] >= 1 for p in params)
    rng = np.random.default_rng(0)
    centres = simulate._positions(5, 200, 20, rng)
    for i, p in enumerate(centres):
        for q in centres[i + 1:]:
            assert np.hypot(*(p - q)) >= 40


def test_atomic_model_through_gemmi(tmp_path):
    pdb = tmp_path / "tiny.pdb"
    lines = []
    for i, (x, y, z, el) in enumerate([(0, 0, 0, "C"), (5, 0, 0, "N"), (0, 5, 0, "O"),
                                       (0, 0, 5, "S"), (1, 1, 1, "H")]):
        lines.append(f"ATOM  {i + 1:5d}  {el:<3s} ALA A   1    {x:8.3f}{y:8.3f}{z:8.3f}"
                     f"  1.00  0.00          {el:>2s}")
    pdb.write_text("\n".join(lines) + "\nEND\n")
    cloud = simulate.load_structure(pdb)
    assert len(cloud.weight) == 4  # hydrogen dropped
    assert sorted(cloud.weight) == [6, 7, 8, 16]
    np.testing.assert_allclose(cloud.xyz.mean(axis=0), 0, atol=1e-9)


def test_bad_sources_and_settings(tmp_path, blob_map):
    path, _ = blob_map
    bad = tmp_path / "bad.cif"
    bad.write_text("not a model\n")
    with pytest.raises(InputError, match="gemmi cannot read"):
        simulate.load_structure(bad)
    flat = tmp_path / "flat.mrc"
    mrc.write_mrc(flat, np.arange(256, dtype=np.float32).reshape(16, 16))
    with pytest.raises(InputError, match="must be 3D"):
        simulate.load_structure(flat)
    cloud = simulate.load_structure(path, threshold=0.0)
    with pytest.raises(ConfigError, match="does not fit"):
        simulate.Simulator(cloud, SimulationConfig(pixel_size=0.1, field=64))
    for defocus in [(2.0, 1.0), (-1.0, 1.0), (0.0, 0.0)]:
        with pytest.raises(ConfigError, match="defocus range"):
            SimulationConfig(defocus_um=defocus).validate()


def test_simulate_cli_and_cache(blob_map, tmp_path):
    path, _ = blob_map
    out = tmp_path / "fields.mrcs"
    result = CliRunner().invoke(cli, ["simulate", str(path), "--out", str(out), "--n", "3",
                                      "--pixel-size", "1", "--field", "64", "--threshold", "0",
                                      "--png", "-q"])
    assert result.exit_code == 0, result.output
    sections, header = image_io.read_sections(out)
    assert header.shape == (3, 64, 64) and header.kind == "stack" and header.voxel_size[0] == 1.0
    assert (tmp_path / "fields.png").exists()
    bad = CliRunner().invoke(cli, ["simulate", str(path), "--out", str(tmp_path / "x.mrcs"),
                                   "--defocus", "-1:2"])
    assert bad.exit_code == 2 and "defocus range" in bad.output
    cfg = SimulationConfig(pixel_size=1.0, field=64, fields=2, map_threshold=0.0)
    first = simulate.cached_fields(path, cfg, seed=1, cache=tmp_path / "cache")
    stamp = first.stat().st_mtime_ns
    assert simulate.cached_fields(path, cfg, seed=1, cache=tmp_path / "cache") == first
    assert first.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_fit_trains_on_simulated_fields(blob_map, tmp_path, monkeypatch):
    from cryoem_denoise.model import model_store

    path, _ = blob_map
    monkeypatch.setenv("CRYOEM_DENOISE_DATA", str(tmp_path / "cache"))
    out = tmp_path / "model"
    result = CliRunner().invoke(cli, ["fit", "--tiny", "--simulate", str(path), "--sim-fields", "12",
                                      "--pixel-size", "1", "--steps", "2", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    meta = model_store.load_metadata(out)
    (stack,) = meta["data"]["inputs"]["clean"]
    assert "simulated" in stack and stack.endswith(".mrcs")
    assert model_store.load_config(out).simulation.fields == 12


def _sim_args(path, out, *extra):
    return ["simulate", str(path), "--out", str(out), "--n", "2", "--pixel-size", "1",
            "--field", "48", "--particles", "2", "--threshold", "0", "-q", *extra]


def test_simulate_with_dose_writes_the_truth_and_independent_halves(blob_map, tmp_path):
    path, _ = blob_map
    out = tmp_path / "f.mrcs"
    result = CliRunner().invoke(cli, _sim_args(path, out, "--dose", "50", "--halves", "--png"))
    assert result.exit_code == 0, result.output
    half1, half2 = tmp_path / "f_half1.mrcs", tmp_path / "f_half2.mrcs"
    assert simulate.shot_noise_paths(out, halves=True) == [half1, half2]
    assert "f_half1.mrcs" in result.output and (tmp_path / "f.png").exists()
    clean, _ = image_io.read_sections(out)
    a, header = image_io.read_sections(half1)
    b, _ = image_io.read_sections(half2)
    assert a.shape == b.shape == clean.shape == (2, 48, 48) and header.voxel_size[0] == 1.0
    np.testing.assert_array_equal(a, np.round(a))
    assert a.mean() == pytest.approx(25, rel=0.03) and b.mean() == pytest.approx(25, rel=0.03)
    lam = np.stack([noise.expected_counts(c, 50) for c in clean]) / 2
    na, nb = (a - lam).ravel(), (b - lam).ravel()
    assert abs(np.corrcoef(na, nb)[0, 1]) < 0.06  # 4608 px: sd ~0.015
    assert na.var() == pytest.approx(25, rel=0.1)
    assert not (tmp_path / "f_noisy.mrcs").exists()
    with mrcfile.open(half2, permissive=True) as f:
        labels = [f.header.label[i].decode() for i in range(int(f.header.nlabl))]
    assert any("shot noise 50 e/px half 2 of 2" in t for t in labels)
    # the same seed gives the same files; the clean stack is the one simulate always wrote
    again = tmp_path / "g.mrcs"
    assert CliRunner().invoke(cli, _sim_args(path, again, "--dose", "50", "--halves")).exit_code == 0
    np.testing.assert_array_equal(image_io.read_sections(tmp_path / "g_half2.mrcs")[0], b)
    plain = tmp_path / "p.mrcs"
    assert CliRunner().invoke(cli, _sim_args(path, plain)).exit_code == 0
    np.testing.assert_array_equal(image_io.read_sections(plain)[0], clean)


def test_simulate_with_dose_alone_writes_one_noisy_stack(blob_map, tmp_path):
    path, _ = blob_map
    cfg = SimulationConfig(pixel_size=1.0, field=48, particles=2, map_threshold=0.0)
    out = tmp_path / "f.mrcs"
    assert simulate.simulate_to_file(path, out, 2, cfg, seed=3, dose=8) == out
    noisy, _ = image_io.read_sections(tmp_path / "f_noisy.mrcs")
    clean, _ = image_io.read_sections(out)
    assert noisy.shape == clean.shape and noisy.mean() == pytest.approx(8, rel=0.05)
    lam = np.stack([noise.expected_counts(c, 8) for c in clean])
    assert (noisy - lam).var() / lam.mean() == pytest.approx(1, abs=0.1)  # Poisson
    assert not (tmp_path / "f_half1.mrcs").exists()


def test_simulate_dose_refusals(blob_map, tmp_path):
    path, _ = blob_map
    out = tmp_path / "f.mrcs"
    for dose in ("0", "-5", "nan"):
        bad = CliRunner().invoke(cli, _sim_args(path, out, "--dose", dose))
        assert bad.exit_code == 2 and "--dose" in bad.output and dose in bad.output
        assert len(bad.output.strip().splitlines()) == 1
    bad = CliRunner().invoke(cli, _sim_args(path, out, "--halves"))
    assert bad.exit_code == 2 and "--dose" in bad.output
    assert list(tmp_path.iterdir()) == [path]  # nothing written
    # an existing half refuses the whole run before any work, and --overwrite replaces
    (tmp_path / "f_half2.mrcs").write_bytes(b"keep")
    bad = CliRunner().invoke(cli, _sim_args(path, out, "--dose", "10", "--halves"))
    assert bad.exit_code == 2 and "f_half2.mrcs" in bad.output and "already exists" in bad.output
    assert not out.exists() and not (tmp_path / "f_half1.mrcs").exists()
    assert (tmp_path / "f_half2.mrcs").read_bytes() == b"keep"
    ok = CliRunner().invoke(cli, _sim_args(path, out, "--dose", "10", "--halves", "--overwrite"))
    assert ok.exit_code == 0, ok.output
    assert image_io.read_sections(tmp_path / "f_half2.mrcs")[0].shape == (2, 48, 48)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


RANGED = dict(pixel_size=(0.8, 1.2), b_factor=(0.0, 150.0), amplitude_contrast=(0.05, 0.15),
              particles=(1, 3), ice=(0.0, 0.5), defocus_um=(0.3, 4.0))


def test_ranges_are_drawn_per_field_within_bounds(blob_map):
    path, _ = blob_map
    cfg = SimulationConfig(field=48, **RANGED)
    sim = simulate.Simulator(simulate.load_structure(path, threshold=0.0), cfg)
    a, params = sim.fields(6, seed=3)
    b, again = sim.fields(6, seed=3)
    np.testing.assert_array_equal(a, b)
    assert params == again
    for name, (lo, hi) in RANGED.items():
        values = [p[name] for p in params] if name != "particles" else \
            [p["particles_drawn"] for p in params]
        assert all(lo <= v <= hi for v in values), name
        assert len(set(values)) > 1, name  # drawn per field, not once
    assert all(isinstance(p["particles_drawn"], int) for p in params)


def test_single_values_draw_nothing():
    cfg = SimulationConfig()
    rng = np.random.default_rng(7)
    assert cfg.draw(rng) == cfg
    assert rng.uniform() == np.random.default_rng(7).uniform()  # no number was used
    assert SimulationConfig(pixel_size=(1.5, 1.5)).draw(rng).pixel_size == 1.5


@pytest.mark.parametrize("setting, match", [
    ({"pixel_size": (3.0, 1.0)}, "pixel size range must satisfy low <= high"),
    ({"pixel_size": (0.0, 1.0)}, "pixel size must be positive"),
    ({"pixel_size": "big"}, "pixel_size must be a number or a"),
    ({"b_factor": (-5.0, 10.0)}, "B-factor not negative"),
    ({"amplitude_contrast": (0.1, 1.0)}, "amplitude contrast must be in"),
    ({"particles": (0, 4)}, "at least one particle"),
    ({"particles": (1.5, 4)}, "whole numbers"),
    ({"ice": (-0.1, 0.2)}, "ice amplitude must not be negative"),
    ({"ice": (1, 2, 3)}, "ice must be a number or a"),
])
def test_bad_ranges_are_config_errors(setting, match):
    with pytest.raises(ConfigError, match=match) as info:
        SimulationConfig(**setting).validate()
    assert "\n" not in str(info.value)


def test_broad_preset_and_json_round_trip():
    from cryoem_denoise.config import BROAD_SIMULATION, FitConfig, broad_simulation

    cfg = broad_simulation(field=256)
    assert cfg.field == 256 and cfg.pixel_size == BROAD_SIMULATION["pixel_size"] == (0.7, 3.0)
    assert cfg.range_of("b_factor") == (0.0, 150.0) and cfg.range_of("defocus_um") == (0.3, 4.0)
    loaded = FitConfig.from_json(FitConfig(simulation=cfg).to_json()).simulation
    assert loaded == cfg and isinstance(loaded.particles, tuple)
    assert FitConfig.from_json(FitConfig().to_json()).simulation == SimulationConfig()
    with pytest.raises(ConfigError, match="unknown simulation setting"):
        broad_simulation(pixle_size=1.0)
    with pytest.raises(ConfigError, match="pixel size range"):
        broad_simulation(pixel_size=(3.0, 0.7))


def test_pixel_range_narrowed_so_the_particle_fits(blob_map):
    path, _ = blob_map
    cloud = simulate.load_structure(path, threshold=0.0)
    cfg = SimulationConfig(pixel_size=(0.05, 2.0), field=32, particles=(1, 2))
    sim = simulate.Simulator(cloud, cfg)
    smallest = 2 * cloud.radius / (simulate.FIT_SHARE * 32)
    assert sim.pixel_range == pytest.approx((smallest, 2.0))
    _, params = sim.fields(5, seed=0)
    assert all(smallest <= p["pixel_size"] <= 2.0 for p in params)
    with pytest.raises(ConfigError, match="at any pixel size"):
        simulate.Simulator(cloud, SimulationConfig(pixel_size=(0.05, 0.1), field=32))


def test_stack_records_each_fields_draws(blob_map, tmp_path):
    import json

    path, _ = blob_map
    cfg = SimulationConfig(field=40, map_threshold=0.0, **RANGED)
    out = simulate.simulate_to_file(path, tmp_path / "r.mrcs", 3, cfg, seed=2)
    record = json.loads(simulate.record_path(out).read_text())
    assert simulate.record_path(out) == tmp_path / "r.fields.json"
    assert record["seed"] == 2 and record["source"] == "blob.map"
    assert record["config"]["pixel_size"] == [0.8, 1.2]
    assert [f["index"] for f in record["fields"]] == [0, 1, 2]
    _, params = simulate.Simulator(simulate.load_structure(path, 0.0), cfg).fields(3, seed=2)
    assert [f["pixel_size"] for f in record["fields"]] == [p["pixel_size"] for p in params]
    _, header = image_io.read_sections(out)
    assert 0.8 <= header.voxel_size[0] <= 1.2


def test_simulate_cli_ranges_and_preset(blob_map, tmp_path):
    import json

    path, _ = blob_map
    out = tmp_path / "b.mrcs"
    result = CliRunner().invoke(cli, _sim_args(path, out)[:4] + [
        "--n", "2", "--field", "48", "--threshold", "0", "-q", "--preset", "broad",
        "--pixel-size", "0.8:1.2", "--particles", "1:3"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "b.fields.json").read_text())
    assert record["config"]["b_factor"] == [0.0, 150.0]  # from the preset
    assert record["config"]["pixel_size"] == [0.8, 1.2]  # given
    assert all(0.8 <= f["pixel_size"] <= 1.2 for f in record["fields"])
    for args, match in ((["--pixel-size", "3:1"], "pixel size range"),
                        (["--b-factor", "1:2:3"], "LOW:HIGH"),
                        (["--particles", "1.5"], "whole numbers")):
        bad = CliRunner().invoke(cli, _sim_args(path, tmp_path / "x.mrcs") + args)
        assert bad.exit_code == 2 and match in bad.output, bad.output
