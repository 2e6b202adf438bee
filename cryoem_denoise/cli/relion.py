"""``relion-external``: denoising as a RELION External job.

RELION's External job runs a program from the project folder with ``--o JOBDIR`` and the
job's input node (``--in_mics`` for micrographs, ``--in_parts`` for particles), plus the
parameters the user typed in the job's Params tab as ``--NAME VALUE`` and ``--j THREADS``.
The program writes its outputs into JOBDIR, lists the ones RELION should know in
``JOBDIR/RELION_OUTPUT_NODES.star``, and leaves ``RELION_JOB_EXIT_SUCCESS`` (or
``RELION_JOB_EXIT_FAILURE``) in JOBDIR when it ends, which RELION's GUI watches.
"""

import os
import sys
from pathlib import Path

import click

from cryoem_denoise.cli.common import cli, error_line, os_error_message
from cryoem_denoise.cli.options import COUNT, config_options, given_options
from cryoem_denoise.cli.run import apply
from cryoem_denoise.config import InferenceConfig
from cryoem_denoise.errors import EXIT_ERROR, CryoEMDenoiseError

#: The files RELION's External job conventions name.
OUTPUT_NODES = "RELION_OUTPUT_NODES.star"
EXIT_SUCCESS, EXIT_FAILURE = "RELION_JOB_EXIT_SUCCESS", "RELION_JOB_EXIT_FAILURE"
#: The output node of each input kind: (file, RELION >= 4 type label, RELION 3.1 type number).
NODES = {"mics": ("denoised_micrographs.star", "MicrographGroupMetadata.star.cryoem-denoise", 1),
         "parts": ("denoised_particles.star", "ParticleGroupMetadata.star.cryoem-denoise", 3)}


def output_nodes_text(nodes):
    """``RELION_OUTPUT_NODES.star`` for ``[(path, label, number)]``: the node type as
    RELION >= 4 reads it (``rlnPipeLineNodeTypeLabel``) and as RELION 3.1 does
    (``rlnPipeLineNodeType``)."""
    lines = ["", "# version 30001", "", "data_output_nodes", "", "loop_",
             "_rlnPipeLineNodeName #1", "_rlnPipeLineNodeTypeLabel #2",
             "_rlnPipeLineNodeType #3"]
    lines += [f"{path} {label} {number}" for path, label, number in nodes]
    return "\n".join(lines) + "\n\n"


def _marker(job_dir, name):
    for old in (EXIT_SUCCESS, EXIT_FAILURE):
        (job_dir / old).unlink(missing_ok=True)
    (job_dir / name).touch()


@cli.command("relion-external", context_settings={"ignore_unknown_options": False})
@click.option("--o", "job_dir", required=True, type=click.Path(file_okay=False),
              help="The job's folder (RELION gives it, e.g. External/job012/).")
@click.option("--in_mics", "in_mics", type=click.Path(dir_okay=False),
              help="Micrographs STAR file (the job's 'Input micrographs').")
@click.option("--in_parts", "in_parts", type=click.Path(dir_okay=False),
              help="Particles STAR file (the job's 'Input particles').")
@click.option("--model", "model_dir", type=click.Path(),
              help="Model folder written by `fit` (a Params-tab parameter 'model')  "
                   "[the shipped model]")
@click.option("--j", "threads", type=COUNT, help="Threads RELION grants the job.")
@config_options(InferenceConfig)
def relion_external(job_dir, in_mics, in_parts, model_dir, threads, **options):
    """Denoise a RELION job's micrographs or particles as an External job.

    In RELION's External job: 'External executable' cryoem-denoise-relion (or a script
    running `cryoem-denoise relion-external "$@"`), 'Input micrographs' (or particles), and
    optional parameters on the Params tab (model, tile, batch_size, ...). The denoised
    images, denoised_micrographs.star (or denoised_particles.star) and
    RELION_OUTPUT_NODES.star are written into --o; RELION_JOB_EXIT_SUCCESS (or _FAILURE)
    marks the end.
    """
    job = Path(job_dir)
    try:
        job.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CryoEMDenoiseError(f"cannot create the job folder ({os_error_message(exc)})",
                                 job) from None
    inputs = [(kind, path) for kind, path in (("mics", in_mics), ("parts", in_parts)) if path]
    if len(inputs) != 1:
        _marker(job, EXIT_FAILURE)  # RELION waits for a marker
        raise click.UsageError("give one of --in_mics and --in_parts")
    kind, star_path = inputs[0]
    if threads:  # TensorFlow and BLAS read these when they start
        for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
            os.environ.setdefault(name, str(threads))
    inference = {k.replace("_", "-"): v for k, v in
                 given_options(InferenceConfig, options).items()}
    args = [star_path, "--out", str(job), "--skip-existing", "-q"]
    if model_dir:
        args += ["--model", model_dir]
    for name, value in inference.items():
        args += [f"--{name}"] if value is True else [f"--{name}", str(value)]
    ctx = click.get_current_context()
    status = 0
    try:
        ctx.invoke(apply, **apply.make_context("apply", args, parent=ctx).params)
    except SystemExit as exc:  # apply ends with 2 or 3 when files failed
        status = exc.code or 0
    except CryoEMDenoiseError as exc:
        error_line(exc)
        status = EXIT_ERROR
    except OSError as exc:
        error_line(os_error_message(exc))
        status = EXIT_ERROR
    except BaseException:
        _marker(job, EXIT_FAILURE)
        raise
    star_out = job / NODES[kind][0]
    if star_out.is_file():
        path = str(Path(job_dir) / NODES[kind][0])
        (job / OUTPUT_NODES).write_text(output_nodes_text([(path, *NODES[kind][1:])]))
    ok = status in (0, 3) and star_out.is_file()
    _marker(job, EXIT_SUCCESS if ok else EXIT_FAILURE)
    if status:
        sys.exit(status)


@cli.command("merge-star")
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", "-o", "out", required=True, type=click.Path(dir_okay=False),
              help="The merged STAR file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
def merge_star(shards, out, overwrite):
    """Merge the STAR lists of a sharded apply (SHARDS: denoised_*_shardKofN.star) into one.

    The final step of a cluster job array: the image rows of every shard, in the order
    given, and the other tables (optics) once.
    """
    from cryoem_denoise.io import star

    rows = star.merge_stars(list(shards), out, overwrite=overwrite)
    click.echo(f"{out}: {rows} rows from {len(shards)} STAR file(s)")
