"""Commands that train: ``fit`` and ``experiments``."""

import click

from cryoem_denoise.cli.common import cli, quiet_tensorflow, warn_precision
from cryoem_denoise.cli.options import COUNT, Number, config_fields, config_options
from cryoem_denoise.config import PRESETS, FitConfig

# -- fit ---------------------------------------------------------------------------------
#: Option dest → (config section, field), generated from the config's option fields.
_FIT_OPTIONS = {dest: (section, fld.name)
                for dest, (section, fld) in config_fields(FitConfig, command="fit").items()}

#: Options that change the generator (they may not differ from an --init-from model's).
_MODEL_OPTIONS = {k for k, (section, _) in _FIT_OPTIONS.items() if section == "model"} - {"tile"}


def _apply_mode(cfg, noise2noise, self_supervised, paired, options):
    """Set the data mode; a critic is off by default without clean targets."""
    if noise2noise and self_supervised:
        raise click.UsageError("--noise2noise and --self-supervised exclude each other")
    if noise2noise and not paired:
        raise click.UsageError("--noise2noise needs the second halves: fit HALF1... --noisy HALF2...")
    if self_supervised and paired:
        raise click.UsageError("--self-supervised takes single noisy images; drop --noisy")
    if noise2noise or self_supervised:
        cfg.data.mode = "noise2noise" if noise2noise else "self_supervised"
        cfg.data.swap_pairs = True
        if options.get("critic") is None:
            # a critic judging against noisy targets learns their noise: off unless asked
            cfg.train.adversarial = False
    elif paired:
        cfg.data.mode = "pairs"
    return cfg.validate()


def _build_fit_config(base, experiment, options):
    """``base`` with a Table 2 experiment and the options that were given applied."""
    cfg = base
    if experiment:
        cfg.train.apply_experiment(experiment)
    for name, value in options.items():
        if value is None or name not in _FIT_OPTIONS:
            continue
        section, field = _FIT_OPTIONS[name]
        setattr(getattr(cfg, section), field, value)
    return cfg.validate()


@cli.command()
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option("--out", "-o", "out", required=True, type=click.Path(file_okay=False),
              help="Model folder to create (or to continue with --resume).")
@click.option("--noisy", multiple=True, type=click.Path(),
              help="Paired mode: a noisy file for each clean INPUT, in the same order (repeat).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Start from this config.json (options given here override it).")
@click.option("--tiny", is_flag=True, help="Small, fast preset (64x64 tiles, 8 filters) for trials.")
@click.option("--preset", type=click.Choice(list(PRESETS)),
              help="Named recipe: 'paper' (the paper's model and losses, the default) or "
                   "'quality' (the shipped model's recipe; see docs/results/quality.md).")
@click.option("--experiment", type=click.Choice(["1011", "1010", "1009", "1005"]),
              help="Optimisers of one of the paper's Table 2 experiments.")
@click.option("--simulate", "sim_sources", multiple=True, type=click.Path(),
              help="Also train on fields simulated from this atomic model or map (repeat).")
@click.option("--sim-preset", type=click.Choice(["default", "broad"]),
              help="Simulated fields' settings: the defaults, or broad ranges drawn per field "
                   "(pixel size, B-factor, defocus, contrast, particles, ice)  "
                   "[default; broad for --preset quality]")
@click.option("--noise2noise", is_flag=True,
              help="INPUTS and --noisy are two independent noisy halves of each exposure "
                   "(even/odd frames): Noise2Noise, halves swapped at random, no noise added.")
@click.option("--self-supervised", "self_supervised", is_flag=True,
              help="INPUTS are single noisy exposures: Neighbor2Neighbor sub-sampled pairs.")
@config_options(FitConfig, command="fit")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace a model already in --out.")
@click.option("--max-minutes", type=Number(float, low=0, low_open=True),
              help="Train for at most this long in this call, then write a usable model "
                   "(checkpoint and weights); --resume continues it to --steps.")
@click.option("--stop-after", type=COUNT, hidden=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def fit(inputs, out, noisy, config_file, tiny, preset, experiment, sim_sources, noise2noise,
        self_supervised, resume, overwrite, stop_after, quiet, sim_preset, max_minutes,
        **options):
    """Train a denoiser on clean image INPUTS (files or folders) into --out.

    By default the paper's Wasserstein GAN (--preset paper); --preset quality is the recipe
    of the shipped model (a residual U-Net trained without the critic).

    Noise of --sigma is added on the fly (the paper's protocol); with --noisy, pairs are
    used as they are. --simulate adds fields simulated from a structure (generated once
    into the cache). Without INPUTS or --simulate, the built-in set is used: fields
    simulated from the seven training structures (--preset quality: with the microscope
    and sample settings drawn per field from broad ranges).

    Real data without clean images: --noise2noise (INPUTS and --noisy are the two halves of
    each exposure) or --self-supervised (INPUTS are single noisy exposures), optionally
    starting from a trained model (--init-from default).
    """
    from pathlib import Path

    from cryoem_denoise import training
    from cryoem_denoise.config import FitConfig, tiny_config
    from cryoem_denoise.data import datasets
    from cryoem_denoise.data.simulate import cached_fields, default_training_inputs
    from cryoem_denoise.errors import CryoEMDenoiseError, InputError
    from cryoem_denoise.io import image_io
    from cryoem_denoise.model import model_store

    quiet_tensorflow()
    if resume:
        if config_file or tiny or preset:
            raise click.UsageError("--resume continues the saved config; drop "
                                   "--config/--tiny/--preset")
        base = model_store.load_config(out, resume=True)
    elif config_file:
        try:
            base = FitConfig.from_json(Path(config_file).read_bytes())
        except OSError as exc:
            raise InputError(exc.strerror or "cannot read", config_file) from None
        except CryoEMDenoiseError as exc:
            raise exc.with_path(config_file) from None
    elif tiny and preset:
        raise click.UsageError("choose one of --tiny and --preset")
    else:
        base = tiny_config() if tiny else PRESETS[preset or "paper"]()
    if options.get("init_from") and not resume:
        given = sorted(k for k in _MODEL_OPTIONS if options.get(k) is not None)
        if given:
            raise click.UsageError(f"--init-from takes the model's generator; drop "
                                   f"{', '.join('--' + k.replace('_', '-') for k in given)}")
        # the generator of the model fine-tuned from (--tile may still change the crops),
        # its input scaling, frozen BatchNorm (options given here override them)
        training.inherit_from_init(base, options["init_from"])
    if options.get("pixel_size") is not None:
        from cryoem_denoise.cli.data import _parse_range

        options["pixel_size"] = _parse_range(options["pixel_size"], "--pixel-size")
    if sim_preset and not resume:
        from cryoem_denoise.config import SimulationConfig, broad_simulation

        base.simulation = broad_simulation(fields=base.simulation.fields) \
            if sim_preset == "broad" else SimulationConfig(fields=base.simulation.fields)
    cfg = _build_fit_config(base, experiment, options)
    if not resume:
        cfg = _apply_mode(cfg, noise2noise, self_supervised, bool(noisy), options)
    warn_precision(cfg.train.precision)
    noisy_paths = image_io.find_image_files(noisy) if noisy else None
    clean = image_io.find_image_files(inputs) if inputs else []
    if noisy_paths and sim_sources:
        raise click.UsageError("--simulate cannot be combined with --noisy pairs")
    if cfg.data.mode in ("noise2noise", "self_supervised") and not (clean or resume):
        raise click.UsageError(f"{cfg.data.mode.replace('_', '-')} training needs your noisy "
                               "images as INPUTS")
    for source in sim_sources:
        clean.append(cached_fields(source, cfg.simulation, cfg.train.seed, progress=not quiet))
    if resume and not clean:
        clean, noisy_paths = training.saved_inputs(out)
        if clean and noisy_paths is None and not all(Path(p).exists() for p in clean) \
                and all(datasets.is_simulated(p) for p in clean):
            # the built-in set, on another machine: simulated again (seeded; fit checks the
            # data fingerprint)
            clean = default_training_inputs(cfg.simulation, cfg.train.seed,
                                                     progress=not quiet)
    elif not clean:
        click.echo("no inputs given: training on fields simulated from the 7 training "
                   "structures (5 atomic models, 2 EMDB maps)", err=True)
        clean = default_training_inputs(cfg.simulation, cfg.train.seed,
                                                 progress=not quiet)
    meta = training.fit(cfg, clean, out, noisy_paths=noisy_paths, resume=resume,
                        overwrite=overwrite, progress=not quiet, stop_after=stop_after,
                        time_limit=None if max_minutes is None else max_minutes * 60)
    last = meta["validation"][-1] if meta["validation"] else {}
    recalibrated = meta.get("batch_norm_recalibration", {}).get("validation")
    summary = f"model in {out}: {meta['steps']} steps, {meta['train_seconds']:.0f} s"
    if last:
        summary += (f", validation PSNR {last['val_psnr']:.2f} dB (noisy {last['val_psnr_noisy']:.2f}),"
                    f" SSIM {last['val_ssim']:.3f}")
        if recalibrated:
            summary += (f"; {recalibrated['val_psnr']:.2f} dB, SSIM {recalibrated['val_ssim']:.3f}"
                        f" with BatchNorm statistics of {meta['batch_norm_recalibration']['crops']}"
                        " crops")
        if cfg.data.mode in ("noise2noise", "self_supervised"):
            summary += f"; measured against {meta['data']['validation_reference']}"
    click.echo(summary)


# -- experiments -------------------------------------------------------------------------
@cli.command()
@click.argument("inputs", nargs=-1)
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--names", default="1011,1010,1009,1005", show_default=True,
              help="Which of the paper's Table 2 experiments to run.")
@click.option("--tiny", is_flag=True, help="Small, fast preset (64x64 tiles, 8 filters).")
@config_options(FitConfig, only=("steps", "batch_size", "sigma", "seed", "log_every",
                                 "validate_every"), command="fit")
@click.option("--quiet", "-q", is_flag=True)
def experiments(inputs, out_dir, names, tiny, quiet, **options):
    """The paper's optimiser experiments (Table 2): same data, seed and budget per setting.

    Writes OUT/expNNNN model folders, table2.md/.json, fig7.png (loss curves) and fig8.png
    (PSNR/SSIM bars). Finished experiments are reused and interrupted ones resumed.
    """
    from cryoem_denoise.config import FitConfig, tiny_config
    from cryoem_denoise.data.simulate import default_training_inputs
    from cryoem_denoise.evaluation import experiments as exps
    from cryoem_denoise.evaluation.evaluate import parse_list
    from cryoem_denoise.io import image_io

    quiet_tensorflow()
    cfg = _build_fit_config(tiny_config() if tiny else FitConfig(), None, options)
    clean = image_io.find_image_files(inputs) if inputs else \
        default_training_inputs(cfg.simulation, cfg.train.seed, progress=not quiet)
    results = exps.run_experiments(cfg, clean, out_dir, tuple(parse_list(names)),
                                   progress=not quiet)
    click.echo(exps.table2_markdown(results["experiments"]))
    click.echo(f"results in {out_dir}")
