import json

import pytest
from click.testing import CliRunner

from cryoem_denoise.cli import cli

pytestmark = pytest.mark.backends  # also run on JAX by make test


@pytest.mark.slow
def test_table2_experiments_run_and_resume(clean_mrc, tmp_path):
    data = clean_mrc("train.mrc", (160, 160))
    out = tmp_path / "t2"
    args = ["experiments", str(data), "--out", str(out), "--tiny", "--steps", "6",
            "--log-every", "3", "--validate-every", "6", "--names", "1011,1005", "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "table2.json").read_text())["experiments"]
    assert set(record) == {"1011", "1005"}
    assert record["1005"]["d_optimizer"] == "adam" and record["1011"]["d_lr"] == 1e-5
    assert all(r["psnr"] is not None and r["steps"] == 6 for r in record.values())
    for name in ("table2.md", "fig7.png", "fig8.png"):
        assert (out / name).stat().st_size > 0
    stamp = (out / "exp1011" / "generator.weights.h5").stat().st_mtime_ns
    again = CliRunner().invoke(cli, args)  # finished runs are reused, not retrained
    assert again.exit_code == 0
    assert (out / "exp1011" / "generator.weights.h5").stat().st_mtime_ns == stamp
    bad = CliRunner().invoke(cli, ["experiments", str(data), "--out", str(out), "--names", "999"])
    assert bad.exit_code == 2 and "unknown experiment" in bad.output
