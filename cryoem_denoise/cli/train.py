"""Commands that train: ``fit`` and ``experiments``."""

import click

from cryoem_denoise.cli.common import cli, quiet_tensorflow, warn_precision
from cryoem_denoise.config import LOSS_WEIGHTINGS, PRESETS, SIGMA_DRAWS
from cryoem_denoise.intensity import METHODS as INTENSITY_METHODS


# -- fit ---------------------------------------------------------------------------------
#: CLI option → (config section, field); each is applied only when given.
_FIT_OPTIONS = {
    "tile": ("model", "tile"), "ngf": ("model", "ngf"), "depth": ("model", "depth"),
    "ndf": ("model", "ndf"), "dropout": ("model", "dropout"), "residual": ("model", "residual"),
    "upsample": ("model", "upsample"), "full_resolution": ("model", "full_resolution"),
    "critic_layers": ("model", "critic_layers"),
    "critic_conditional": ("model", "critic_conditional"),
    "sigma": ("data", "sigma"), "intensity": ("data", "intensity"), "augment": ("data", "augment"),
    "validation_fraction": ("data", "validation_fraction"),
    "steps": ("train", "steps"), "batch_size": ("train", "batch_size"),
    "g_optimizer": ("train", "g_optimizer"), "g_lr": ("train", "g_lr"),
    "d_optimizer": ("train", "d_optimizer"), "d_lr": ("train", "d_lr"),
    "clip": ("train", "clip"), "n_critic": ("train", "n_critic"),
    "gray_lambda": ("train", "gray_lambda"), "gray_scale": ("train", "gray_scale"),
    "gray_reduction": ("train", "gray_reduction"), "precision": ("train", "precision"),
    "strategy": ("train", "strategy"), "seed": ("train", "seed"),
    "log_every": ("train", "log_every"), "validate_every": ("train", "validate_every"),
    "checkpoint_every": ("train", "checkpoint_every"),
    "sim_fields": ("simulation", "fields"), "pixel_size": ("simulation", "pixel_size"),
    "critic": ("train", "adversarial"), "init_from": ("train", "init_from"),
    "subsample_draws": ("data", "subsample_draws"),
    "sigma_map": ("model", "sigma_map"), "sigma_draw": ("data", "sigma_draw"),
    "loss_weighting": ("train", "loss_weighting"),
    "bn_recalibration": ("train", "bn_recalibration"),
    "freeze_batch_norm": ("train", "freeze_batch_norm"),
    "noisy_intensity": ("data", "noisy_intensity"),
}

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
                   "'quality' (the shipped model's recipe; see the README's ablation).")
@click.option("--experiment", type=click.Choice(["1011", "1010", "1009", "1005"]),
              help="Optimisers of one of the paper's Table 2 experiments.")
@click.option("--steps", type=int, help="Generator steps in all  [10000]")
@click.option("--batch-size", type=int, help="Global batch size  [4]")
@click.option("--sigma", help="Noise sigma on [0,255]: '40' or a range '10:80'  [10:80]")
@click.option("--tile", type=int, help="Training tile side  [256]")
@click.option("--ngf", type=int, help="Generator filters in the first layer  [64]")
@click.option("--depth", type=int, help="U-Net encoder blocks  [8]")
@click.option("--ndf", type=int, help="Critic filters in the first layer  [64]")
@click.option("--critic-layers", type=int, help="PatchGAN layers  [3]")
@click.option("--critic-conditional/--critic-unconditional", default=None,
              help="Critic sees the noisy input too  [conditional]")
@click.option("--dropout", type=float, help="Decoder dropout  [0.5]")
@click.option("--residual/--no-residual", default=None, help="Global residual learning  [off]")
@click.option("--upsample", type=click.Choice(["transpose", "resize"]),
              help="Decoder upsampling: pix2pix's transposed convolution, or nearest-neighbour "
                   "resize + 3x3 convolution (no checkerboard)  [transpose]")
@click.option("--full-resolution/--no-full-resolution", "full_resolution", default=None,
              help="A 3x3 stem and head at the input's resolution around the U-Net  [off]")
@click.option("--sigma-map/--no-sigma-map", "sigma_map", default=None,
              help="A noise-level map as a second input channel (sigma known in training; "
                   "given or estimated by `apply`)  [off]")
@click.option("--sigma-draw", type=click.Choice(list(SIGMA_DRAWS)),
              help="How each crop's sigma is drawn from the --sigma range  [uniform]")
@click.option("--loss-weighting", type=click.Choice(list(LOSS_WEIGHTINGS)),
              help="Weight of each crop in the gray constraint: none, 1/its noise's sigma, "
                   "or 1/its noise variance  [none]")
@click.option("--bn-recalibration", type=click.IntRange(min=0), metavar="CROPS",
              help="When training ends, set BatchNorm's statistics to those of this many "
                   "training crops instead of the moving averages; 0: off  [0]")
@click.option("--freeze-batch-norm/--no-freeze-batch-norm", default=None,
              help="Keep the generator's BatchNorm statistics, scale and offset as they are "
                   "(inference mode while training)  [off; on with --init-from]")
@click.option("--g-optimizer", type=click.Choice(["adam", "sgd", "rmsprop"]), help="[adam]")
@click.option("--g-lr", type=float, help="Generator learning rate  [1e-4]")
@click.option("--d-optimizer", type=click.Choice(["adam", "sgd", "rmsprop"]), help="[sgd]")
@click.option("--d-lr", type=float, help="Critic learning rate  [1e-5]")
@click.option("--clip", type=float, help="Critic weight clipping c  [0.001]")
@click.option("--n-critic", type=int, help="Critic updates per generator update  [1]")
@click.option("--gray-lambda", type=float, help="Weight of the gray constraint  [0.1]")
@click.option("--gray-scale", type=click.Choice(["model", "unit255"]), help="[model]")
@click.option("--gray-reduction", type=click.Choice(["sum", "mean"]), help="[sum]")
@click.option("--intensity", type=click.Choice(list(INTENSITY_METHODS)),
              help="Per-image scaling to [0,255]  [minmax]")
@click.option("--noisy-intensity", type=click.Choice(["same", *INTENSITY_METHODS]),
              help="Scaling of noisy images (apply without --sigma, halves, Noise2Noise): "
                   "'robust' puts real data where the training inputs were  [same]")
@click.option("--augment/--no-augment", default=None, help="Random flips and rotations  [on]")
@click.option("--validation-fraction", type=float, help="Held-out share of the data  [0.1]")
@click.option("--precision", type=click.Choice(["auto", "float32", "mixed_float16",
                                                "mixed_bfloat16"]), help="[auto]")
@click.option("--strategy", type=click.Choice(["auto", "default", "mirrored", "multiworker"]),
              help="Devices: auto (all GPUs), default (one), mirrored (all local), multiworker (all hosts)  [auto]")
@click.option("--seed", type=int, help="Random seed  [0]")
@click.option("--log-every", type=int, help="Steps between loss records  [500]")
@click.option("--validate-every", type=int, help="Steps between validation scores  [1000]")
@click.option("--checkpoint-every", type=int, help="Steps between checkpoints  [500]")
@click.option("--simulate", "sim_sources", multiple=True, type=click.Path(),
              help="Also train on fields simulated from this atomic model or map (repeat).")
@click.option("--sim-fields", type=int, help="Fields simulated per --simulate source  [600]")
@click.option("--pixel-size", help="Pixel size of simulated fields, Å: a value or a range "
                                   "LOW:HIGH drawn per field  [2.0]")
@click.option("--sim-preset", type=click.Choice(["default", "broad"]),
              help="Simulated fields' settings: the defaults, or broad ranges drawn per field "
                   "(pixel size, B-factor, defocus, contrast, particles, ice)  "
                   "[default; broad for --preset quality]")
@click.option("--noise2noise", is_flag=True,
              help="INPUTS and --noisy are two independent noisy halves of each exposure "
                   "(even/odd frames): Noise2Noise, halves swapped at random, no noise added.")
@click.option("--self-supervised", "self_supervised", is_flag=True,
              help="INPUTS are single noisy exposures: Neighbor2Neighbor sub-sampled pairs.")
@click.option("--subsample-draws", type=int,
              help="--self-supervised: sub-sampled pairs drawn per image  [4]")
@click.option("--critic/--no-critic", default=None,
              help="Train with the WGAN critic  [on; off for --noise2noise/--self-supervised]")
@click.option("--init-from", "init_from",
              help="Start from this model folder's generator ('default': the shipped model).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace a model already in --out.")
@click.option("--max-minutes", type=float,
              help="Train for at most this long in this call, then write a usable model "
                   "(checkpoint and weights); --resume continues it to --steps.")
@click.option("--stop-after", type=int, hidden=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def fit(inputs, out, noisy, config_file, tiny, preset, experiment, sim_sources, noise2noise,
        self_supervised, resume, overwrite, stop_after, quiet, sim_preset, max_minutes,
        **options):
    """Train the WGAN denoiser on clean MRC INPUTS (files or folders) into --out.

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

    from cryoem_denoise import datasets, model_store, mrc, training
    from cryoem_denoise.config import FitConfig, tiny_config
    from cryoem_denoise.errors import InputError
    from cryoem_denoise.simulate import cached_fields

    quiet_tensorflow()
    if max_minutes is not None and not max_minutes > 0:
        raise click.BadParameter(f"must be positive, got {max_minutes:g}",
                                 param_hint="--max-minutes")
    if resume:
        if config_file or tiny or preset:
            raise click.UsageError("--resume continues the saved config; drop "
                                   "--config/--tiny/--preset")
        base = model_store.load_config(out)
    elif config_file:
        try:
            base = FitConfig.from_json(Path(config_file).read_text())
        except OSError as exc:
            raise InputError(exc.strerror or "cannot read", config_file) from None
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
    noisy_paths = mrc.find_mrc_files(noisy) if noisy else None
    clean = mrc.find_mrc_files(inputs) if inputs else []
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
            clean = datasets.default_training_inputs(cfg.simulation, cfg.train.seed,
                                                     progress=not quiet)
    elif not clean:
        click.echo("no inputs given: training on fields simulated from the 7 training "
                   "structures (5 atomic models, 2 EMDB maps)", err=True)
        clean = datasets.default_training_inputs(cfg.simulation, cfg.train.seed,
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
@click.option("--steps", type=int, help="Steps per experiment (the same budget for all).")
@click.option("--batch-size", type=int)
@click.option("--sigma")
@click.option("--seed", type=int)
@click.option("--log-every", type=int)
@click.option("--validate-every", type=int)
@click.option("--quiet", "-q", is_flag=True)
def experiments(inputs, out_dir, names, tiny, quiet, **options):
    """The paper's optimiser experiments (Table 2): same data, seed and budget per setting.

    Writes OUT/expNNNN model folders, table2.md/.json, fig7.png (loss curves) and fig8.png
    (PSNR/SSIM bars). Finished experiments are reused and interrupted ones resumed.
    """
    from cryoem_denoise import datasets, mrc
    from cryoem_denoise import experiments as exps
    from cryoem_denoise.config import FitConfig, tiny_config
    from cryoem_denoise.evaluate import parse_list

    quiet_tensorflow()
    cfg = _build_fit_config(tiny_config() if tiny else FitConfig(), None, options)
    clean = mrc.find_mrc_files(inputs) if inputs else \
        datasets.default_training_inputs(cfg.simulation, cfg.train.seed, progress=not quiet)
    results = exps.run_experiments(cfg, clean, out_dir, tuple(parse_list(names)),
                                   progress=not quiet)
    click.echo(exps.table2_markdown(results["experiments"]))
    click.echo(f"results in {out_dir}")
