"""One source per option: ``fit``'s options come from the config's fields."""

import dataclasses

import click
import pytest

from cryoem_denoise.cli import cli
from cryoem_denoise.cli.options import config_fields
from cryoem_denoise.cli.train import _build_fit_config
from cryoem_denoise.config import FitConfig


def _params(command):
    return {p.name: p for p in cli.commands[command].params}


def test_every_option_field_is_a_fit_option_with_its_help_and_default():
    fields = config_fields(FitConfig, command="fit")
    assert {"steps", "tile", "sigma", "critic", "sim_fields", "pixel_size",
            "freeze_batch_norm", "noisy_intensity"} <= set(fields)
    params = _params("fit")
    for dest, (section, fld) in fields.items():
        param = params[dest]
        assert param.default is None  # "not given": the preset or --config decides
        assert fld.metadata["cli"]["help"] in param.help
        if isinstance(fld.default, bool):
            assert param.secondary_opts  # --x/--no-x
        if fld.metadata["cli"]["choices"]:
            assert isinstance(param.type, click.Choice)
            assert list(param.type.choices) == list(fld.metadata["cli"]["choices"])


def test_a_given_option_lands_in_its_config_field():
    fields = config_fields(FitConfig, command="fit")
    samples = {bool: False, int: 3, float: 0.25, str: "x"}
    for dest, (section, fld) in fields.items():
        if dest in ("sigma", "pixel_size", "init_from") or fld.metadata["cli"]["choices"]:
            continue  # values that need a meaning; checked below
        value = samples[type(fld.default)] if fld.default is not None else "x"
        if isinstance(fld.default, bool):
            value = not fld.default
        cfg = FitConfig()
        setattr(getattr(cfg, section), fld.name, value)
        expected = dataclasses.asdict(cfg)
        try:
            built = _build_fit_config(FitConfig(), None, {dest: value})
        except Exception:  # some values are refused by validate(); the field is still set
            continue
        assert dataclasses.asdict(built) == expected, dest
    cfg = _build_fit_config(FitConfig(), None, {"critic": False, "sim_fields": 7, "sigma": "20:30",
                                               "upsample": "resize"})
    assert (cfg.train.adversarial, cfg.simulation.fields, cfg.data.sigma, cfg.model.upsample) \
        == (False, 7, "20:30", "resize")


@pytest.mark.parametrize("args", [["--upsample", "nearest"], ["--bn-recalibration", "-1"]])
def test_generated_options_check_their_values(args, tmp_path):
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["fit", "--tiny", "--out", str(tmp_path / "m"), *args])
    assert result.exit_code == 2 and "invalid value" in result.output.lower()
    assert not (tmp_path / "m").exists()


def test_simulate_options_come_from_the_simulation_config():
    from cryoem_denoise.config import SimulationConfig

    fields = config_fields(SimulationConfig, command="simulate")
    assert {"pixel_size", "field", "particles", "voltage", "cs", "amplitude_contrast",
            "defocus", "astigmatism", "b_factor", "ice", "threshold"} == set(fields)
    params = _params("simulate")
    for dest, (_, fld) in fields.items():
        assert fld.metadata["cli"]["help"] in params[dest].help
    assert "sim_fields" in _params("fit") and "sim_fields" not in params  # fit's only
    assert "defocus" not in _params("fit")  # simulate's only
