"""RELION / cryoSPARC STAR files in and out of `apply` (a RELION-style project folder)."""

import pandas as pd
import pytest
import starfile
from click.testing import CliRunner

from cryoem_denoise.cli import cli
from cryoem_denoise.errors import InputError
from cryoem_denoise.io import image_io, star


@pytest.fixture
def project(tmp_path, monkeypatch, clean_mrc):
    """A RELION project: two motion-corrected micrographs (pixel size not in their headers)
    and micrographs_ctf.star with an optics table (RELION >= 3.1), run from the project."""
    root = tmp_path / "project"
    mics = root / "MotionCorr" / "job002" / "Micrographs"
    mics.mkdir(parents=True)
    for i in range(2):
        path = clean_mrc(f"m{i}.mrc", (96, 80), seed=i)
        data, _ = image_io.read_image(path)
        image_io.write_image(mics / f"mic{i}.mrc", data, voxel_size=(0, 0, 0))
    optics = pd.DataFrame({"rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
                           "rlnMicrographPixelSize": [1.06], "rlnVoltage": [300.0]})
    micrographs = pd.DataFrame({
        "rlnMicrographName": [f"MotionCorr/job002/Micrographs/mic{i}.mrc" for i in range(2)],
        "rlnOpticsGroup": [1, 1], "rlnDefocusU": [12000.0, 15000.0]})
    starfile.write({"optics": optics, "micrographs": micrographs}, root / "micrographs_ctf.star")
    monkeypatch.chdir(root)
    return root


def _apply(model, *args):
    return CliRunner().invoke(cli, ["apply", "--model", str(model), "--tile", "64",
                                    "--overlap", "16", "-q", *map(str, args)])


def test_micrograph_star_in_and_out(project, tiny_model):
    result = _apply(tiny_model, "micrographs_ctf.star", "--out", "Denoise/job001/")
    assert result.exit_code == 0, result.output
    out = starfile.read(project / "Denoise/job001/denoised_micrographs.star", always_dict=True)
    assert set(out) == {"optics", "micrographs"}
    names = list(out["micrographs"]["rlnMicrographName"])
    assert names == [f"Denoise/job001/mic{i}_denoised.mrc" for i in range(2)]
    assert all((project / n).is_file() for n in names)  # relative to the project, as RELION
    assert list(out["micrographs"]["rlnDefocusU"]) == [12000.0, 15000.0]  # columns kept
    assert float(out["optics"]["rlnMicrographPixelSize"][0]) == pytest.approx(1.06)
    # the optics table's pixel size reaches the outputs, whose inputs had none
    assert image_io.read_header(project / names[0]).pixel_size == pytest.approx(1.06, abs=1e-4)


def test_old_single_table_star_and_missing_rows(project, tiny_model):
    """RELION < 3.1 (one table, detector pixel size and magnification) with a row whose file
    is missing: one line for it, the rest processed, exit 3."""
    table = pd.DataFrame({"rlnMicrographName": ["MotionCorr/job002/Micrographs/mic0.mrc",
                                                "MotionCorr/job002/Micrographs/gone.mrc",
                                                "MotionCorr/job002/Micrographs/mic1.mrc"],
                          "rlnDetectorPixelSize": [5.0] * 3, "rlnMagnification": [50000.0] * 3})
    starfile.write(table, project / "old.star")
    listed = star.read_star(project / "old.star")
    assert listed.files == {project / f"MotionCorr/job002/Micrographs/mic{i}.mrc": 1.0
                            for i in range(2)}
    assert len(listed.problems) == 1 and "gone.mrc" in str(listed.problems[0])
    result = _apply(tiny_model, "old.star", "--out", "Denoise/job003")
    lines = [line for line in result.stderr.splitlines() if line.startswith("cryoem-denoise:")]
    assert result.exit_code == 3, result.output
    assert len(lines) == 1 and "gone.mrc" in lines[0] and "missing" in lines[0]
    out = starfile.read(project / "Denoise/job003/denoised_micrographs.star")
    assert len(out) == 2 and all((project / n).is_file() for n in out["rlnMicrographName"])


def test_particle_star_points_at_sections_of_the_denoised_stacks(project, tiny_model, clean_mrc):
    stacks = project / "Extract" / "job005"
    stacks.mkdir(parents=True)
    stack = clean_mrc("p.mrcs", (3, 48, 48), stack=True, seed=4)
    (stacks / "mic0.mrcs").write_bytes(stack.read_bytes())
    particles = pd.DataFrame({"rlnImageName": [f"{k:06d}@Extract/job005/mic0.mrcs"
                                               for k in (1, 3, 2)],
                              "rlnCoordinateX": [10.0, 20.0, 30.0]})
    starfile.write({"particles": particles}, project / "particles.star")
    result = _apply(tiny_model, "particles.star", "--out", "Denoise/job004")
    assert result.exit_code == 0, result.output
    out = starfile.read(project / "Denoise/job004/denoised_particles.star")
    assert list(out["rlnImageName"]) == [f"{k:06d}@Denoise/job004/mic0_denoised.mrcs"
                                         for k in (1, 3, 2)]
    denoised, header = image_io.read_image(project / "Denoise/job004/mic0_denoised.mrcs")
    assert header.kind == "stack" and denoised.shape == (3, 48, 48)


def test_bad_star_files_are_one_line(project, tiny_model):
    (project / "junk.star").write_text("data_\nloop_\n_rlnSomething #1\n1\n")
    result = _apply(tiny_model, "junk.star", "--out", "x")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "no table lists images" in lines[0]
    with pytest.raises(InputError, match="N@stack"):
        pd_table = pd.DataFrame({"rlnImageName": ["stack.mrcs"]})
        starfile.write(pd_table, project / "p.star")
        listed = star.read_star(project / "p.star")
        raise listed.problems[0]
    assert not (project / "x").exists()


def test_relion_external_job(project, tiny_model):
    """RELION's External job conventions: outputs in --o, RELION_OUTPUT_NODES.star naming
    the output STAR with its node type, RELION_JOB_EXIT_SUCCESS at the end."""
    from cryoem_denoise.cli.relion import EXIT_FAILURE, EXIT_SUCCESS, OUTPUT_NODES

    job = project / "External" / "job005"
    job.mkdir(parents=True)  # RELION makes the job's folder
    result = CliRunner().invoke(cli, ["relion-external", "--o", "External/job005/",
                                      "--in_mics", "micrographs_ctf.star", "--j", "2",
                                      "--model", str(tiny_model), "--tile", "64",
                                      "--overlap", "16"])
    assert result.exit_code == 0, result.output
    assert (job / EXIT_SUCCESS).is_file() and not (job / EXIT_FAILURE).exists()
    nodes = starfile.read(job / OUTPUT_NODES)
    assert list(nodes["rlnPipeLineNodeName"]) == ["External/job005/denoised_micrographs.star"]
    assert nodes["rlnPipeLineNodeTypeLabel"][0].startswith("MicrographGroupMetadata.star")
    assert int(nodes["rlnPipeLineNodeType"][0]) == 1  # RELION 3.1's micrographs node
    out = starfile.read(project / nodes["rlnPipeLineNodeName"][0], always_dict=True)
    assert all((project / n).is_file() for n in out["micrographs"]["rlnMicrographName"])
    # a rerun (RELION's "continue") does only what is missing and succeeds again
    again = CliRunner().invoke(cli, ["relion-external", "--o", "External/job005/",
                                     "--in_mics", "micrographs_ctf.star",
                                     "--model", str(tiny_model), "--tile", "64"])
    assert again.exit_code == 0, again.output
    # a missing input: one line, the failure marker
    bad = CliRunner().invoke(cli, ["relion-external", "--o", "External/job006/",
                                   "--in_mics", "nothing.star", "--model", str(tiny_model)])
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.exit_code == 2 and len(lines) == 1, bad.output
    assert (project / "External/job006" / EXIT_FAILURE).is_file()
    assert not (project / "External/job006" / OUTPUT_NODES).exists()


def test_sharded_star_lists_merge_into_the_unsharded_one(project, tiny_model):
    for k in range(2):
        result = _apply(tiny_model, "micrographs_ctf.star", "--out", "Denoise/job007",
                        "--shard", f"{k}/2")
        assert result.exit_code == 0, result.output
    shards = [f"Denoise/job007/denoised_micrographs_shard{k}of2.star" for k in range(2)]
    result = CliRunner().invoke(cli, ["merge-star", *shards, "--out",
                                      "Denoise/job007/denoised_micrographs.star"])
    assert result.exit_code == 0, result.output
    merged = starfile.read(project / "Denoise/job007/denoised_micrographs.star",
                           always_dict=True)
    assert sorted(merged["micrographs"]["rlnMicrographName"]) == [
        f"Denoise/job007/mic{i}_denoised.mrc" for i in range(2)]
    assert len(merged["optics"]) == 1  # the optics table once
    bad = CliRunner().invoke(cli, ["merge-star", shards[0], "particles_missing.star",
                                   "--out", "x.star"])
    assert bad.exit_code == 2 and not (project / "x.star").exists()
