"""Methods x noise levels x images → metrics, timings, tables and figures.

The paper's comparison (Table 1, Figs. 6 and 10), rerunnable on any clean images:

1. clean images are read (each section of each file), scaled to [0, 255] and optionally
   centre-cropped; every fifth image is set aside as the validation split on which the
   Gaussian-blur width is chosen per sigma (the others are scored);
2. for each image and sigma one noisy image is drawn (seeded by seed, image and sigma), and
   every method denoises that same noisy image;
3. MAE, MSE, RMSE, PSNR, SSIM and seconds are recorded per cell (image, sigma, method) in
   ``cells.jsonl``, appended as they finish, so an interrupted run resumes where it stopped;
4. results: ``results.json`` (cells, means, spreads, chosen widths, config, versions),
   ``results.csv``, ``table.md`` (one Table-1-like table per sigma), ``fig6_sigmaS.png``
   (image grid per method) and ``fig10.png`` (PSNR/SSIM bars per sigma).

The classical methods run in a process pool (``jobs``), the GAN in the main process.
"""

import csv
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cryoem_denoise.config import EvaluateConfig  # noqa: F401  (part of this module's interface)
from cryoem_denoise.config import paper_config
from cryoem_denoise.data.intensity import to_unit255
from cryoem_denoise.data.noise import add_protocol_noise
from cryoem_denoise.errors import (
    ConfigError,
    CryoEMDenoiseError,
    InputError,
    OutputError,
)
from cryoem_denoise.evaluation import baselines, figures, metrics
from cryoem_denoise.inference.denoiser import Denoiser
from cryoem_denoise.io import image_io, mrc
from cryoem_denoise.io.atomic import describe_os_error, output_folder, write_text
from cryoem_denoise.model import model_store
from cryoem_denoise.model.model_store import environment
from cryoem_denoise.runtime.processes import init_worker
from cryoem_denoise.runtime.progress import progress_bar

#: Method names in tables and figures; ``"gan"`` (the trained model: the method's key on the
#: command line) is named after what the model is (:func:`model_label`).
LABELS = {"gan": "trained model", "bm3d": "BM3D", "ksvd": "K-SVD", "gaussian": "Gaussian blur",
          "noisy": "Noisy"}


def model_label(denoiser):
    """What a model is, in a table's column heading: the shipped model, the paper's WGAN
    (trained with the paper's recipe: its generator, critic, losses and noise), another WGAN
    (a critic, other settings) or a network trained without a critic. Never "GAN" for a
    model trained without one."""
    cfg = denoiser.config
    shipped = (denoiser.model_dir is not None and
               denoiser.model_dir.resolve() == model_store.default_model_dir().resolve())
    if not cfg.train.adversarial:
        kind = "U-Net, no critic"
        return f"shipped model ({kind})" if shipped else kind
    paper = paper_config()
    same = (all(asdict(getattr(cfg, part)) == asdict(getattr(paper, part))
                for part in ("model", "data")) and _paper_losses(cfg.train, paper.train))
    kind = "the paper's WGAN" if same else "WGAN (own settings)"
    return f"shipped model ({kind})" if shipped else kind


def _paper_losses(train, paper):
    """Whether a training config has the paper's critic, losses and optimisers."""
    keys = ("clip", "n_critic", "gray_lambda", "gray_scale", "gray_reduction", "g_optimizer",
            "g_lr", "d_optimizer", "d_lr", "loss_weighting", "gradient_penalty")
    return all(getattr(train, k, None) == getattr(paper, k, None) for k in keys)


def method_labels(denoiser):
    """:data:`LABELS` with the trained model (if any) named by :func:`model_label`."""
    return LABELS if denoiser is None else {**LABELS, "gan": model_label(denoiser)}


def parse_list(text, kind=str):
    """``'10,25,40'`` → ``[10.0, 25.0, 40.0]`` (with ``kind=float``)."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise ConfigError(f"cannot read {text!r} as a comma-separated list") from None


def load_clean_images(paths, cfg, on_error=None):
    """:class:`CleanImage` s (name, image on [0, 255], source, section) from image files;
    centre-cropped to ``cfg.crop``.

    A file that cannot be used is passed (as its :class:`InputError`) to ``on_error`` and
    left out, so one bad file does not stop the others; without ``on_error``, or when no
    file is usable, the (last) error is raised.
    """
    images, failures = [], []
    for path in paths:
        try:
            found = _file_images(path, cfg, len(images))
        except (CryoEMDenoiseError, MemoryError) as exc:
            if isinstance(exc, MemoryError):
                exc = InputError("too large to read into memory", path)
            if on_error is None:
                raise
            failures.append(exc)
            continue
        images.extend(found)
        if cfg.max_images and len(images) >= cfg.max_images:
            images = images[:cfg.max_images]
            break
    if not images and failures:
        for exc in failures[:-1]:
            on_error(exc)
        raise failures[-1]
    for exc in failures:
        on_error(exc)
    if not images:
        raise InputError("no images to evaluate on")
    return images


def _file_images(path, cfg, have):
    """The scaled (and cropped) sections of one file, up to ``cfg.max_images - have``."""
    images = []
    sections, header = image_io.read_sections(path)
    for i, sec in enumerate(sections):
        sec = np.asarray(sec, np.float32)
        if cfg.crop:
            h, w = sec.shape
            if min(h, w) < cfg.crop:
                raise InputError(f"image is {w}x{h}, smaller than --crop {cfg.crop}", path)
            y, x = (h - cfg.crop) // 2, (w - cfg.crop) // 2
            sec = sec[y:y + cfg.crop, x:x + cfg.crop]
        try:
            mrc.check_section(sec)
            scaled, _ = to_unit255(sec, cfg.intensity)
        except InputError as exc:
            raise exc.with_path(path) from None
        name = Path(path).name + (f"[{i}]" if len(sections) > 1 else "")
        images.append(CleanImage(name, scaled, Path(path).name, i))
        if cfg.max_images and have + len(images) >= cfg.max_images:
            return images
    return images


class CleanImage(NamedTuple):
    """One clean section to evaluate on, on [0, 255]."""

    name: str        # shown in tables: the file name, with [section] for a stack
    image: np.ndarray
    source: str      # the file's name
    section: int


def noisy_version(clean, sigma, seed):
    """A :class:`CleanImage` with the paper's noise (:func:`add_protocol_noise`: the same
    noise ``apply --sigma`` adds to the same file and section)."""
    return add_protocol_noise(clean.image, sigma, seed, clean.source, clean.section)


def _score(clean, result, seconds):
    return {**metrics.all_metrics(clean, result), "seconds": seconds}


def _pool_context():
    """How worker processes start: forked, unless JAX runs here (its threads make a forked
    child deadlock-prone), then spawned. Either way they are this process's own children,
    so the kernel ends them with it (:func:`end_with_parent`); a fork server's children are
    its, and it outlives a parent killed with SIGKILL."""
    return multiprocessing.get_context("spawn" if "jax" in sys.modules else "fork")


def _run_classical(method, clean, noisy, sigma, keep_image=False):
    started = time.perf_counter()
    out = method(noisy, sigma)
    return _score(clean, out, time.perf_counter() - started), (out if keep_image else None)


def _settings_id(cfg, method):
    """What a cell's result depends on besides image, sigma and model: a resumed run reuses
    a finished cell only if these are unchanged (noise seed, crop, scaling, the validation
    split that picks the Gaussian width, and K-SVD's settings)."""
    parts = {"seed": cfg.seed, "crop": cfg.crop, "intensity": cfg.intensity,
             "max_images": cfg.max_images, "validation_every": cfg.validation_every}
    if method == "ksvd":
        parts["ksvd"] = asdict(cfg.ksvd)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def _record_key(rec):
    """The identity of a finished cell (older records without settings never match)."""
    return rec["image"], rec["sigma"], rec["method"], rec.get("model"), rec.get("settings")


def _model_id(model_dir):
    weights = Path(model_dir) / "generator.weights.h5"
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:12] if weights.exists() else None


def evaluate(clean_paths, out_dir, cfg, model_dir=None, progress=False, on_error=None):
    """Run the comparison; return the results dict (also written to ``out_dir``).

    ``on_error`` receives the :class:`InputError` of each input file that cannot be used
    (the others are evaluated); see :func:`load_clean_images`.

    Raises
    ------
    ConfigError, InputError, OutputError
        Unknown methods, bad sigmas, no images, a GAN model that does not load, or an
        output folder that cannot be written — all before any method runs.
    """
    cfg.validate()
    created = not os.path.lexists(out_dir)
    try:
        with output_folder(out_dir) as folder:
            return _evaluate(clean_paths, folder, cfg, model_dir, progress, on_error)
    except CryoEMDenoiseError:
        # a failed first run (a full disk, a bad model) leaves nothing behind; into an
        # existing folder, cells.jsonl keeps the finished cells for the rerun to resume from
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _evaluate(clean_paths, out_dir, cfg, model_dir, progress, on_error):
    denoiser = None
    model_id = None
    if "gan" in cfg.methods:
        if model_dir is None:
            raise ConfigError("the 'gan' method needs a model (--model, or the default model)")

        denoiser = Denoiser.load(model_dir)
        model_id = _model_id(model_dir)
    images = load_clean_images(clean_paths, cfg, on_error)
    if len(images) < 2 and "gaussian" in cfg.methods:
        raise InputError("need at least 2 images (one chooses the Gaussian width)")
    val = [i for i in range(len(images)) if i % cfg.validation_every == 0] \
        if "gaussian" in cfg.methods else []
    test = [i for i in range(len(images)) if i not in val]

    widths, width_scores = {}, {}
    for sigma in cfg.sigmas:
        if "gaussian" in cfg.methods:
            cleans = [images[i][1] for i in val]
            noisies = [noisy_version(images[i], sigma, cfg.seed) for i in val]
            widths[sigma], width_scores[sigma] = baselines.choose_gaussian_width(cleans, noisies)

    cells_path = out_dir / "cells.jsonl"
    done = {}
    if cells_path.exists():
        for line in cells_path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:  # a line cut short by a killed run: that cell is redone
                continue
            done[_record_key(rec)] = rec

    settings = {m: _settings_id(cfg, m) for m in cfg.methods}

    def key(i, sigma, method):
        return (images[i][0], sigma, method, model_id if method == "gan" else None,
                settings[method])

    todo = [(i, s, m) for s in cfg.sigmas for i in test for m in cfg.methods
            if key(i, s, m) not in done]
    bar = progress_bar(len(todo), "evaluate", "cell", progress)
    records = list(done.values())

    def record(i, sigma, method, scores):
        rec = {"image": images[i][0], "sigma": sigma, "method": method,
               "model": model_id if method == "gan" else None, "settings": settings[method],
               **scores}
        try:
            with open(cells_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
        except OSError as exc:
            raise OutputError(describe_os_error(exc), cells_path) from None
        records.append(rec)
        bar.update(1)

    jobs = cfg.jobs or os.cpu_count() or 1
    classical = {m: baselines.ClassicalMethod(m, cfg.ksvd, widths) for m in cfg.methods if m != "gan"}
    shown = test[0] if test else None  # the image of the Fig. 6 grids
    figure_outputs = {}  # (sigma, method) -> denoised image of `shown`
    # one BLAS thread per worker; each ends with this process, even one killed with SIGKILL
    with ProcessPoolExecutor(max_workers=jobs, initializer=init_worker,
                             initargs=(os.getpid(), 1), mp_context=_pool_context()) as pool:
        futures = []
        for i, sigma, method in todo:
            if method == "gan":
                continue
            clean = images[i][1]
            futures.append(((i, sigma, method), pool.submit(
                _run_classical, classical[method], clean, noisy_version(images[i], sigma, cfg.seed),
                sigma, i == shown)))
        for i, sigma, method in todo:
            if method != "gan":
                continue
            clean = images[i][1]
            noisy = noisy_version(images[i], sigma, cfg.seed)
            started = time.perf_counter()
            out = denoiser.denoise_scaled(noisy, noise_level=sigma)
            record(i, sigma, method, _score(clean, out, time.perf_counter() - started))
            if i == shown:
                figure_outputs[sigma, method] = out
        for (i, sigma, method), fut in futures:
            scores, out = fut.result()
            record(i, sigma, method, scores)
            if out is not None:
                figure_outputs[sigma, method] = out
    bar.close()

    current = {key(i, s, m) for s in cfg.sigmas for i in test for m in cfg.methods}
    records = [r for r in records if _record_key(r) in current]
    results = summarise(records, cfg)
    results.update({"config": _config_dict(cfg), "model": str(model_dir) if model_dir else None,
                    "model_id": model_id, "labels": method_labels(denoiser),
                    "gaussian_widths": widths,
                    "gaussian_width_psnr": width_scores,
                    "images": {"scored": [images[i][0] for i in test],
                               "validation": [images[i][0] for i in val]}})

    results["environment"] = environment()
    write_results(out_dir, results, images, cfg, denoiser, widths, figure_outputs)
    return results


def _config_dict(cfg):
    d = asdict(cfg)
    d["sigmas"] = list(cfg.sigmas)
    d["methods"] = list(cfg.methods)
    return d


def summarise(records, cfg):
    """Mean and std per (sigma, method) of every metric and the seconds."""
    names = list(metrics.NAMES) + ["seconds"]
    table = {}
    for sigma in cfg.sigmas:
        for method in cfg.methods:
            rows = [r for r in records if r["sigma"] == sigma and r["method"] == method]
            if not rows:
                continue
            table.setdefault(str(sigma), {})[method] = {
                "n": len(rows),
                **{n: float(np.mean([r[n] for r in rows])) for n in names},
                **{n + "_std": float(np.std([r[n] for r in rows])) for n in names}}
    return {"cells": records, "summary": table}


def markdown_table(results, cfg):
    """One Table-1-like Markdown table per sigma (best value in bold)."""
    labels = results.get("labels", LABELS)
    lines = []
    rows = [("mae", "MAE ↓"), ("mse", "MSE ↓"), ("rmse", "RMSE (PMSE) ↓"), ("psnr", "PSNR ↑"),
            ("ssim", "SSIM ↑"), ("seconds", "seconds / image ↓")]
    for sigma in cfg.sigmas:
        block = results["summary"].get(str(sigma))
        if not block:
            continue
        methods = [m for m in cfg.methods if m in block]
        n = block[methods[0]]["n"]
        lines += [f"**sigma = {sigma:g}** ({n} images, mean ± std)", "",
                  "| metric | " + " | ".join(labels[m] for m in methods) + " |",
                  "|---" * (len(methods) + 1) + "|"]
        for key, label in rows:
            values = [block[m][key] for m in methods]
            best = (max if metrics.HIGHER_IS_BETTER.get(key, False) else min)(
                v for m, v in zip(methods, values) if m != "noisy" or key != "seconds")
            cells = []
            for m, v in zip(methods, values):
                text = f"{v:.3g}" if key in ("ssim", "seconds") else f"{v:.2f}"
                text += f" ± {block[m][key + '_std']:.2g}"
                cells.append(f"**{text}**" if v == best and m != "noisy" else text)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_results(out_dir, results, images, cfg, denoiser, widths, figure_outputs):
    out_dir = Path(out_dir)
    write_text(out_dir / "results.json", json.dumps(results, indent=2, default=str) + "\n",
               overwrite=True)
    buf = io.StringIO()
    fields = ["image", "sigma", "method", "model"] + list(metrics.NAMES) + ["seconds"]
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(results["cells"])
    write_text(out_dir / "results.csv", buf.getvalue(), overwrite=True)
    write_text(out_dir / "table.md", markdown_table(results, cfg), overwrite=True)

    labels = results.get("labels", LABELS)
    figures.save_figure(figures.metric_bars(results["summary"], cfg.methods, labels),
                        out_dir / "fig10.png", overwrite=True)
    scored = results["images"]["scored"]
    if scored:
        index = next(i for i, img in enumerate(images) if img.name == scored[0])
        for sigma in cfg.sigmas:
            clean = images[index][1]
            noisy = noisy_version(images[index], sigma, cfg.seed)
            panels = [("clean", clean), (f"noisy σ={sigma:g}", noisy)]
            for m in cfg.methods:
                if m == "noisy":
                    continue
                out = figure_outputs.get((sigma, m))
                if out is None:  # computed in an earlier, resumed run: redo this one image
                    out = (denoiser.denoise_scaled(noisy, noise_level=sigma) if m == "gan"
                           else baselines.ClassicalMethod(m, cfg.ksvd, widths)(noisy, sigma))
                panels.append((labels[m], out))
            figures.save_panels(out_dir / f"fig6_sigma{sigma:g}.png", panels, overwrite=True,
                                zoom=0)
