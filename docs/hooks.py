"""MkDocs hooks: result tables rendered from the benchmark JSON at build time.

A page asks for a table with a marker on a line of its own::

    <!-- table: heldout-draw0 -->

and for a single number in running text with ``<!-- value: NAME -->``. Each table is built
from its source file (``benchmarks/results/*.json``, the shipped model's ``metadata.json``,
``data/manifest.json``) and followed by a stamp line: the commit, the machine and the date
of the result. A result saved by ``benchmarks/common.py`` carries its own stamp; for older
files the stamp is the commit that last changed the file (``git log -1``), the machine the
JSON records (or "machine not recorded") and the run's date where the JSON has one.

The figures in ``benchmarks/results/`` are added to the site under ``figures/`` so pages can
show them without copies in ``docs/``. An unknown marker or a missing source file stops the
build.
"""

import json
import logging
import re
import subprocess
from functools import cache
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODEL_DIR = ROOT / "cryoem_denoise" / "default_model"
MARKER = re.compile(r"<!--\s*(table|value):\s*([\w.-]+)\s*-->")
SIGMAS = ("10.0", "25.0", "40.0", "80.0")

#: Result figures shown in the docs: site path -> file in the repository.
FIGURES = {
    "figures/real_quality.png": RESULTS / "real_quality.png",
    "figures/tiling.png": RESULTS / "tiling.png",
    "figures/ablation.png": RESULTS / "ablation.png",
    "figures/fig6_sigma40.png": RESULTS / "quality" / "simulated" / "fig6_sigma40.png",
    "figures/fig10.png": RESULTS / "quality" / "simulated" / "fig10.png",
    "figures/real_micrographs_epu2.9_example.png": RESULTS / "real_micrographs_epu2.9_example.png",
    "figures/real_micrographs_fei-extended.png": RESULTS / "real_micrographs_fei-extended.png",
}

#: The paper's Table 1 (sigma = 40, its own test images), quoted for comparison; not ours.
PAPER_TABLE1 = {
    "mae": {"noisy": 9.42, "gan": 8.20, "bm3d": 9.78, "ksvd": 45.13, "gaussian": 9.75},
    "mse": {"noisy": 108.81, "gan": 87.89, "bm3d": 115.16, "ksvd": 2401.98, "gaussian": 114.60},
    "rmse": {"noisy": 10.43, "gan": 9.37, "bm3d": 10.73, "ksvd": 49.01, "gaussian": 10.70},
    "psnr": {"noisy": 13.08, "gan": 22.27, "bm3d": 14.30, "ksvd": 14.32, "gaussian": 14.32},
    "ssim": {"noisy": 0.22, "gan": 0.58, "bm3d": 0.43, "ksvd": 0.45, "gaussian": 0.50},
}

METHOD_NAMES = {"gan": "trained model (shipped)", "bm3d": "BM3D (true σ)", "ksvd": "K-SVD",
                "gaussian": "Gaussian blur", "noisy": "noisy input"}


# -- sources and stamps ---------------------------------------------------------------------
@cache
def load(path):
    path = Path(path)
    if not path.is_file():
        raise PluginError(f"docs/hooks.py: result file {path.relative_to(ROOT)} is missing")
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else text


def result(name):
    return load(RESULTS / name)


@cache
def last_commit(path):
    """``(short hash, date)`` of the commit that last changed ``path``, and whether the file
    has changed since; ``(None, None, False)`` outside a git checkout."""
    rel = str(Path(path).relative_to(ROOT))
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h %cs", "--", rel], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
        changed = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain", "--",
                                  rel], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None, None, False
    return (out[0], out[1], bool(changed)) if len(out) == 2 else (None, None, bool(changed))


def machine(env):
    """The machine a JSON's ``environment`` records, in words."""
    if not env:
        return "machine not recorded"
    gpus = [d.split(" ", 1)[1] for d in env.get("devices") or []
            if d.startswith("gpu") and " " in d]
    gpus = gpus or list(env.get("gpus") or [])
    cores = f"{env['cpu_count']} CPU cores" if env.get("cpu_count") else None
    gpu = ("GPU: " + ", ".join(gpus)) if gpus else "no GPU"
    if env.get("cpu"):
        return ", ".join(x for x in (env["cpu"], cores, gpu) if x)
    return "machine not recorded (" + ", ".join(x for x in (cores, gpu) if x) + ")"


def stamp(path, data=None, machine_text=None):
    """The stamp line under a table built from ``path``."""
    path = Path(path)
    rel = path.relative_to(ROOT)
    data = load(path) if data is None else data
    own = data.get("stamp") if isinstance(data, dict) else None
    if own:
        commit = f"commit `{own['commit']}`" if own.get("commit") else "commit not recorded"
        if own.get("dirty"):
            commit += " with uncommitted changes"
        return (f"*Source: `{rel}`; {commit}; {own.get('machine') or 'machine not recorded'}; "
                f"{own.get('date') or 'date not recorded'}.*")
    commit, date, changed = last_commit(path)
    if commit is None:
        where = "not committed" if changed else "commit unknown (no git checkout)"
    else:
        where = f"last changed in commit `{commit}` ({date})"
        if changed:
            where += ", changed since"
    if machine_text is None:
        machine_text = machine(data.get("environment") if isinstance(data, dict) else None)
    when = data.get("when") if isinstance(data, dict) else None
    run = f"; run {when[:10]} {when[11:16]} UTC" if when and when.endswith("+0000") else \
        (f"; run {when}" if when else "")
    return f"*Source: `{rel}`; {where}; {machine_text}{run}.*"


# -- formatting -----------------------------------------------------------------------------
def table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def sigma(s):
    return f"σ = {float(s):g}"


def ratio(v):
    """A power ratio: two significant digits (they span 1e-5 to 1)."""
    return f"{v:.2g}"


def thousands(v):
    return f"{v:,.0f}"


# -- tables ---------------------------------------------------------------------------------
def _heldout_cells(scores, bm3d):
    return [f"{scores[s][0]:.2f} / {scores[s][1]:.3f} ({scores[s][0] - bm3d[s][0]:+.2f})"
            for s in SIGMAS]


EXTRA_ORDER = ("shipped", "shipped, self-ensemble", "shipped + stage 2",
               "shipped + stage 2, self-ensemble", "previous (CPU)",
               "previous (CPU), self-ensemble")


def _extras(arms):
    names = [a for a in arms if "model" in arms[a]]
    return [a for a in EXTRA_ORDER if a in names] + sorted(a for a in names if a not in EXTRA_ORDER)


def _heldout_table(rows, bm3d_name, b):
    """A held-out draw's table: the models' rows, then BM3D's and the noisy input's."""
    rows = rows + [[bm3d_name] + [f"{b[s][0]:.2f} / {b[s][1]:.3f}" for s in SIGMAS],
                   ["noisy input"] + [f"{b[s][2]:.2f}" for s in SIGMAS]]
    return table(["PSNR (dB) / SSIM (Δ PSNR vs BM3D)"] + [sigma(s) for s in SIGMAS], rows)


def heldout_draw0():
    data = result("ablation.json")
    b = data["bm3d"]
    rows = [[name] + _heldout_cells(data["arms"][name]["heldout"], b)
            for name in _extras(data["arms"])]
    return _heldout_table(rows, "BM3D (true σ)", b), RESULTS / "ablation.json"


def heldout_draw1():
    data = result("heldout_seed1.json")
    scores = data["scores"]
    bm3d_name = next(k for k in scores if k.startswith("BM3D"))
    b = scores[bm3d_name]
    names = sorted((n for n in scores if n != bm3d_name), key=lambda n: not n.startswith("shipped"))
    rows = [[name] + _heldout_cells(scores[name], b) for name in names]
    return _heldout_table(rows, bm3d_name, b), RESULTS / "heldout_seed1.json"


def ablation():
    data = result("ablation.json")
    b = data["bm3d"]
    head = (["arm"] + [f"{sigma(s)} PSNR (Δ BM3D)" for s in SIGMAS]
            + [f"{sigma(s)} SSIM (BM3D)" for s in ("10.0", "80.0")]
            + ["gain at σ = 40", "checkerboard epu / fei", "HF ratio epu / fei",
               "σ = 10 / 80, moving-average BN"])
    rows = [["noisy input"] + [f"{b[s][2]:.2f}" for s in SIGMAS] + [""] * 6,
            ["BM3D (true σ)"] + [f"{b[s][0]:.2f}" for s in SIGMAS]
            + [f"{b[s][1]:.3f}" for s in ("10.0", "80.0")]
            + [f"{b['40.0'][0] - b['40.0'][2]:.2f}", "", "", ""]]
    chain = [a for a in data["args"]["arms"].split(",") if a in data["arms"]]
    for name in chain + _extras(data["arms"]):
        arm = data["arms"][name]
        s = arm["heldout"]
        real = arm["real"]["robust"]
        moving = arm.get("moving_averages")
        rows.append(
            [name] + [f"{s[x][0]:.2f} ({s[x][0] - b[x][0]:+.2f})" for x in SIGMAS]
            + [f"{s[x][1]:.3f} ({b[x][1]:.3f})" for x in ("10.0", "80.0")]
            + [f"{s['40.0'][0] - b['40.0'][2]:.2f}",
               " / ".join(f"{v['checkerboard']:.2f}" for v in real.values()),
               " / ".join(f"{v['high_frequency']:.2f}" for v in real.values()),
               f"{moving['10.0'][0]:.2f} / {moving['80.0'][0]:.2f}" if moving else ""])
    return table(head, rows), RESULTS / "ablation.json"


def _summary(set_name):
    return result("quality.json")["sets"][set_name]["summary"]


def table1():
    ours = _summary("simulated")["40.0"]
    methods = ("noisy", "gan", "bm3d", "ksvd", "gaussian")
    labels = {"mae": "MAE ↓", "mse": "MSE ↓", "rmse": "RMSE (\"PMSE\") ↓", "psnr": "PSNR ↑",
              "ssim": "SSIM ↑"}
    rows = []
    for metric, label in labels.items():
        fmt = "{:.3f}" if metric == "ssim" else "{:.2f}"
        rows.append([label] + [f"{PAPER_TABLE1[metric][m]:.2f} / {fmt.format(ours[m][metric])}"
                               for m in methods])
    head = ["σ = 40, paper / ours"] + [METHOD_NAMES[m] for m in methods]
    return table(head, rows), RESULTS / "quality.json"


def _quality_sigmas(set_name):
    summary = _summary(set_name)
    methods = [m for m in ("gan", "bm3d", "ksvd", "gaussian", "noisy") if m in summary["40.0"]]
    rows = []
    for m in methods:
        rows.append([METHOD_NAMES[m]]
                    + [f"{summary[s][m]['psnr']:.2f} / {summary[s][m]['ssim']:.3f}" for s in SIGMAS]
                    + [f"{summary['40.0'][m]['seconds']:.3g}"])
    head = ["PSNR (dB) / SSIM"] + [sigma(s) for s in SIGMAS] + ["s per image (σ = 40)"]
    return table(head, rows), RESULTS / "quality.json"


def quality_simulated():
    return _quality_sigmas("simulated")


def quality_real():
    return _quality_sigmas("real")


def real_quality():
    data = result("real_quality.json")
    methods = ("model", "bm3d", "gaussian")
    names = {"model": "shipped model", "bm3d": "BM3D (σ estimated)",
             "gaussian": f"Gaussian blur, {data['args']['gaussian_width']:g} px"}
    rows = []
    for group, by_method in data["summary"].items():
        rows.append([group] + [f"{ratio(by_method[m]['checkerboard'])} / "
                               f"{ratio(by_method[m]['high_frequency'])}"
                               if m in by_method else "–" for m in methods])
    head = ["images: checkerboard / HF ratio"] + [names[m] for m in methods]
    return table(head, rows), RESULTS / "real_quality.json"


REAL_MICROGRAPH_METHODS = {"ours": "ours (shipped)", "topaz": "Topaz-Denoise (unet)",
                           "bm3d": "BM3D (σ estimated)"}


def known_truth():
    """PSNR after the affine fit per detector and dose on the second simulator's fields
    (``bench_known_truth.py``); ours' margin over the best of BM3D (either σ) and Topaz,
    marked ✗ under issue 18's goal of +0.5 dB."""
    data = result("known_truth.json")
    methods = ("ours", "bm3d", "bm3d_psd", "topaz", "blur", "noisy")
    names = ("ours", "BM3D (σ est.)", "BM3D (true spectrum)", "Topaz", "blur (oracle width)",
             "noisy")
    rows = []
    for key, cell in data["summary"].items():
        detector, dose = key.split("|")
        peers = [cell[m]["psnr"] for m in ("bm3d", "bm3d_psd", "topaz") if m in cell]
        margin = cell["ours"]["psnr"] - max(peers)
        rows.append([detector.replace("_", " "), dose]
                    + [f"{cell[m]['psnr']:.2f}" if m in cell else "–" for m in methods]
                    + [f"{margin:+.2f}" + ("" if margin >= 0.5 else " ✗")])
    rows.sort(key=lambda r: (r[0], float(r[1])))
    return table(["detector", "e/px"] + list(names) + ["ours − best peer (goal +0.5)"],
                 rows), RESULTS / "known_truth.json"


def known_truth_gaussian():
    """The paper's protocol on the second simulator's fields: ours and BM3D, true σ."""
    data = result("known_truth.json")
    rows = []
    for sigma_key, cell in sorted(data["gaussian_summary"].items(), key=lambda kv: float(kv[0])):
        margin = cell["ours"]["psnr_plain"] - cell["bm3d"]["psnr_plain"]
        rows.append([sigma(sigma_key), f"{cell['ours']['psnr_plain']:.2f}",
                     f"{cell['bm3d']['psnr_plain']:.2f}", f"{cell['noisy']['psnr_plain']:.2f}",
                     f"{margin:+.2f}" + ("" if margin >= 0.5 else " ✗")])
    return table(["σ", "ours", "BM3D (true σ)", "noisy", "ours − BM3D (goal +0.5)"],
                 rows), RESULTS / "known_truth.json"


CRITIC_ARMS = {"paper": "paper's critic (clip ±0.001)", "wgan_gp": "WGAN-GP (λ 10)",
               "none": "no critic", "blur": "blur 2 px", "noisy": "noisy"}


def critic():
    """The critic comparison (``bench_critic.py``): per σ and arm, held-out PSNR, SSIM, kept
    fine-scale power and its output's power there, and blobs per empty field."""
    data = result("critic.json")
    rows = []
    for key, cell in sorted(data["heldout"].items(), key=lambda kv: float(kv[0])):
        empty = data["empty"].get(key, {})
        for arm, name in CRITIC_ARMS.items():
            if arm not in cell:
                continue
            c = cell[arm]
            blobs = empty.get(arm, {}).get("blobs")
            rows.append([sigma(key), name, f"{c['psnr']:.2f}", f"{c['ssim']:.3f}",
                         f"{c['hf_kept']:.2f}", ratio(c["hf_power"]),
                         "–" if blobs is None else f"{blobs:.2f}"])
    return table(["σ", "arm", "PSNR (dB)", "SSIM", "fine power kept", "fine power out / clean",
                  "blobs per empty field"], rows), RESULTS / "critic.json"


def known_truth_finetune():
    """The fine-tunes under selection against the shipped model on the second simulator's
    fields (``bench_known_truth.py --compare``, each run with ``--model`` the fine-tune and
    ``--compare default``): PSNR and fine-scale power per cell, then the paper's protocol."""
    names = {"known_truth_finetune.json": "detector + contrast",
             "known_truth_finetune_detector.json": "detector only"}
    runs = {name: result(file) for file, name in names.items()}
    first = next(iter(runs.values()))
    rows = []
    for key in first["summary"]:
        detector, dose = key.split("|")
        shipped = first["summary"][key]["compare"]
        row = [detector.replace("_", " "), dose, f"{shipped['psnr']:.2f}"]
        for data in runs.values():
            tuned = data["summary"][key]["ours"]
            row += [f"{tuned['psnr']:.2f} ({tuned['psnr'] - shipped['psnr']:+.2f})"]
        row += [ratio(shipped["hf_power"])]
        row += [ratio(data["summary"][key]["ours"]["hf_power"]) for data in runs.values()]
        rows.append(row)
    rows.sort(key=lambda r: (r[0], float(r[1])))
    for key in sorted(first["gaussian_summary"], key=float):
        shipped = first["gaussian_summary"][key]["compare"]["psnr_plain"]
        row = ["Gaussian (paper's protocol)", sigma(key), f"{shipped:.2f}"]
        for data in runs.values():
            tuned = data["gaussian_summary"][key]["ours"]["psnr_plain"]
            row += [f"{tuned:.2f} ({tuned - shipped:+.2f})"]
        rows.append(row + [""] * (1 + len(runs)))
    head = (["detector", "e/px or σ", "shipped (dB)"]
            + [f"{name} (dB, difference)" for name in runs]
            + ["fine power out / truth: shipped"] + list(runs))
    files = [RESULTS / file for file in names]
    others = "\n\n".join(stamp(path) for path in files[1:])  # the first is stamped below
    return f"{table(head, rows)}\n\n{others}", files[0]


def real_micrographs():
    """Issue 18's measures per micrograph, whole and crop, and method; a value that misses
    its goal (the JSON's ``goals``) is marked ✗."""
    data = result("real_micrographs.json")
    goals = data["goals"]

    def cell(key, value):
        if value is None:
            return "–"
        goal = goals[key]
        sign, limit = goal[-2], goal[-1]
        ok = value <= limit if sign == "<=" else value >= limit
        text = ratio(value) if key.endswith("_band") else f"{value:.2f}"
        return text + ("" if ok else " ✗")

    keys = ("mid_band", "low_band", "seam", "edge", "range_excess")
    names = ("mid band", "low band", "seam", "edge", "range excess")
    head = (["micrograph", "image", "method"]
            + [f"{n} {goals[k][-2].replace('<=', '≤').replace('>=', '≥')} {goals[k][-1]:g}"
               + (" σ" if k == "range_excess" else "") for k, n in zip(keys, names)]
            + ["corr. with input", "s"])
    rows = []
    for r in data["rows"]:
        image = (f"whole {r['shape'][0]}×{r['shape'][1]}" if r["kind"] == "whole"
                 else f"central {r['shape'][0]}²")
        seconds = "–" if r.get("seconds") is None else f"{r['seconds']:.0f}"
        if r.get("cached"):
            seconds += " (earlier run, cached)"
        method = REAL_MICROGRAPH_METHODS.get(r["method"])
        if method is None and r["method"].startswith("ours_tile"):
            method = f"{REAL_MICROGRAPH_METHODS['ours']}, tile {r['tile']}"
        rows.append([r["image"].replace(".mrc", ""), image, method]
                    + [cell(k, r[k]) for k in keys] + [f"{r['correlation']:.3f}", seconds])
    return table(head, rows), RESULTS / "real_micrographs.json"


def _default_tiling():
    """``(tile, overlap)`` that ``apply`` uses by default, read from the command line."""
    try:
        from cryoem_denoise.cli import cli

        params = {p.name: p.default for p in cli.commands["apply"].params}
        tile, overlap = params["tile"], params.get("overlap")
        # no overlap default means tile / 8 (click >= 8.2 marks it with a sentinel, not None)
        return int(tile), overlap if isinstance(overlap, int) else int(tile) // 8
    except (ImportError, AttributeError, KeyError, TypeError, ValueError):
        return None  # the table is still right without the mark


def tiling():
    data = result("tiling.json")
    default = _default_tiling()
    fields = list(data["rows"][0]["fields"])
    head = (["tile / overlap"] + [f"{f.replace('.mrc', '')}: whole / interior" for f in fields]
            + ["tiles per 4096²", "s per 4096²", "time ratio"])
    rows = []
    for r in data["rows"]:
        label = f"{r['tile']} / {r['overlap']}"
        if default and (r["tile"], r["overlap"]) == default:
            label = f"**{label} (default)**"
        rows.append([label] + [f"{r['fields'][f]['full']:.3f} / {r['fields'][f]['interior']:.3f}"
                               for f in fields]
                    + [r["tiles_4k"], f"{r['seconds_4k']:.1f}", f"{r['time_ratio']:.2f}"])
    return table(head, rows), RESULTS / "tiling.json"


REAL_NOISE_METHODS = {"bm3d": "BM3D (σ estimated)", "supervised": "shipped (supervised)",
                      "noise2noise": "Noise2Noise", "self_supervised": "self-supervised",
                      "ft_noise2noise": "shipped + N2N fine-tune",
                      "ft_self_supervised": "shipped + self-sup. fine-tune",
                      "noise2noise_critic": "Noise2Noise with critic"}


def real_noise():
    data = result("real_noise.json")
    methods = [m for m in data["args"]["methods"] if m in REAL_NOISE_METHODS]
    rows = []
    for dose in data["args"]["doses"]:
        cells = {r["method"]: r for r in data["rows"] if r["dose"] == dose}
        noisy = next(iter(cells.values()))["psnr_noisy"]
        rows.append([f"{dose:g}", f"{noisy:.2f}"]
                    + [f"{cells[m]['psnr']:.2f} / {cells[m]['ssim']:.3f}" if m in cells else "–"
                       for m in methods])
    head = ["dose (e/px, full exposure)", "noisy"] + [REAL_NOISE_METHODS[m] for m in methods]
    return table(head, rows), RESULTS / "real_noise.json"


def real_noise_spectral():
    data = result("real_noise.json")
    spectral = data["real_micrograph_spectral"]
    methods = [m for m in data["args"]["methods"] if m in spectral]
    rows = [["Nyquist lines (≤ 1: no checkerboard)"]
            + [ratio(spectral[m]["nyquist_ratio"]) for m in methods],
            ["> 0.3 cycles/px (≤ 0.5: it denoises)"]
            + [ratio(spectral[m]["high_freq_ratio"]) for m in methods]]
    return table(["output / input power"] + [REAL_NOISE_METHODS[m] for m in methods], rows), \
        RESULTS / "real_noise.json"


def training():
    data = result("training.json")
    rows = [[r["precision"], r["batch"], f"{r['bare_images_per_s']:.2f}",
             f"{r['loop_images_per_s']:.2f}", f"{r['loop_over_bare']:.2f}",
             f"{r['achieved_gflop_s']:.0f}", f"{r['pipeline_over_step']:.0f}×"]
            for r in data["rows"]]
    head = ["precision", "batch", "bare step (images/s)", "full `fit` loop (images/s)",
            "loop / bare", "GFLOP/s", "input pipeline / step"]
    return table(head, rows), RESULTS / "training.json"


def apply_cpu():
    data = result("apply.json")
    rows = []
    for precision, r in data["rows"].items():
        e2e = r["end_to_end"]
        pure = r["pure_seconds_256_tiles"][str(r["best_batch"])]
        rows.append([precision, f"{e2e['seconds']:.1f}", e2e["tiles"],
                     f"{pure:.1f} (batch {r['best_batch']})", f"{r['end_to_end_over_pure']:.2f}",
                     f"{e2e['peak_rss_gib']:.2f}", f"{r['apply_flops_fraction']:.2f}"])
    head = ["precision", "end to end (s)", "tiles", "pure compute, 256 tiles (s)",
            "end to end / pure", "peak memory (GiB)", "generator FLOP/s vs plain batch"]
    return table(head, rows), RESULTS / "apply.json"


def apply_extra():
    data = result("apply.json")
    k3, b = data["k3_11520x8184"], data["bm3d"]
    rows = [["11520×8184 synthetic K3 micrograph, mixed_bfloat16",
             f"{k3['seconds']:.0f} s, {k3['tiles']} tiles, peak {k3['peak_rss_gib']:.2f} GiB"],
            ["BM3D on a 1024² crop of the 4096² micrograph", f"{b['seconds_1024_crop']:.1f} s"],
            ["BM3D on the whole 4096² micrograph (area-scaled)",
             f"{b['seconds_scaled_4096']:.0f} s"],
            ["BM3D time / generator time", (f"{b['over_gan_float32']:.0f}× (float32), "
                                            f"{b['over_gan_fastest']:.0f}× (mixed_bfloat16)")]]
    return table(["measurement", "result"], rows), RESULTS / "apply.json"


def backends():
    data = result("backends.json")
    by = {(r["what"], r["backend"]): r for r in data["rows"]}
    names = [b for b in data["args"]["backends"]]
    lines = [("train, bare step (crops/s)", "train", "bare_crops_per_s", "{:.1f}"),
             ("train, full `fit` loop (crops/s)", "train", "loop_crops_per_s", "{:.1f}"),
             ("loop / bare", "train", "loop_over_bare", "{:.2f}"),
             ("apply 4096², end to end (s)", "apply", "end_to_end_seconds", "{:.2f}"),
             ("apply, pure compute of the tiles (s)", "apply", "pure_seconds", "{:.2f}"),
             ("end to end / pure", "apply", "end_to_end_over_pure", "{:.2f}"),
             ("model load + compile before the first tile (s)", "apply",
              "load_and_compile_seconds", "{:.2f}")]
    rows = []
    for label, what, key, fmt in lines:
        values = [by[(what, b)][key] if (what, b) in by else None for b in names]
        cells = [fmt.format(v) if v is not None else "–" for v in values]
        ratio_cell = ""
        if len(names) == 2 and None not in values and key not in ("loop_over_bare",
                                                                   "end_to_end_over_pure"):
            ratio_cell = f"{values[1] / values[0]:.2f}"
        rows.append([label] + cells + [ratio_cell])
    head = [""] + names + [f"{names[1]} / {names[0]}" if len(names) == 2 else ""]
    return table(head, rows), RESULTS / "backends.json"


def evaluate_time():
    data = result("evaluate.json")
    cfg = data["config"]
    names = dict(METHOD_NAMES, gan="GAN (the paper's full-size generator, random weights: "
                                    "timing only)")
    rows = [[names.get(m, m), f"{s:.1f}"] for m, s in data["method_seconds"].items()]
    rows.append([(f"**whole run** ({data['images']} images × {len(cfg['sigmas'])} σ, "
                 f"{len(cfg['methods'])} methods)"), (f"**{data['seconds']:.0f}** "
                 f"({data['minutes']:.1f} min)")])
    return table(["method", "seconds (CPU time, summed over workers)"], rows), \
        RESULTS / "evaluate.json"


def simulate_speed():
    data = result("simulate.json")
    cfg = data["config"]
    rows = [["fields simulated per second",
             f"{data['fields_per_s']:.1f} ({cfg['field']}² px, {data['atoms']:,} atoms)"],
            ["cached stack → training crops per second", f"{data['pipeline_crops_per_s']:.0f}"],
            ["full-size train step, crops per second (float32)",
             f"{data['train_crops_per_s']:.2f}"],
            ["input pipeline / train step",
             f"{data['pipeline_crops_per_s'] / data['train_crops_per_s']:.0f}×"]]
    return table(["measurement", "result"], rows), RESULTS / "simulate.json"


GPU_LINE = re.compile(r"^(\d+) file\(s\) denoised into \S+ in ([\d.]+) s \(([\d.]+) tiles/s\)$")
GPU_WALL = re.compile(r"^(.+): ([\d.]+) s wall$")


def gpu_apply():
    path = RESULTS / "device_apply_h200.txt"
    lines = load(path).strip().splitlines()
    rows, pending = [], None
    for line in lines:
        m = GPU_LINE.match(line.strip())
        if m:
            pending = m.groups()
            continue
        m = GPU_WALL.match(line.strip())
        if m and pending:
            rows.append([m.group(1), pending[1], pending[2], m.group(2)])
            pending = None
    device = lines[-1].strip() if lines and not GPU_WALL.match(lines[-1]) else None
    head = ["run (4096² float32 micrographs, 512² tiles)", "denoising, compiled (s)",
            "tiles/s", "wall time incl. start-up and compilation (s)"]
    return table(head, rows), path, (f"{device} (as the run reports it)" if device
                                     else "machine not recorded")


#: Settings that may differ from a preset without changing its recipe.
RUN_SETTINGS = {"steps", "precision", "checkpoint_every", "validate_every", "log_every",
                "freeze_batch_norm", "init_from", "strategy"}


def _recipe(saved):
    """``fit --preset NAME`` if the saved config is that preset's recipe, else "custom"."""
    try:
        from cryoem_denoise.config import PRESETS
    except ImportError:
        return "see `config.json`"
    saved = json.loads(json.dumps(saved))
    for name, make in PRESETS.items():
        preset = json.loads(json.dumps(make().to_dict()))
        if all({k: v for k, v in preset[section].items() if k not in RUN_SETTINGS}
               == {k: v for k, v in saved.get(section, {}).items() if k not in RUN_SETTINGS}
               for section in preset):
            return f"`fit --preset {name}` (`config.{make.__name__}`)"
    return "custom (no preset; see `config.json`)"


def shipped_model():
    path = MODEL_DIR / "metadata.json"
    meta = load(path)
    cfg, m, t, d = meta["config"], meta["config"]["model"], meta["config"]["train"], \
        meta["config"]["data"]
    env = meta.get("environment", {})
    devices = ", ".join(env.get("devices") or []) or "CPU"
    moving = [v for v in meta.get("validation", []) if "val_psnr" in v]
    recal = meta.get("batch_norm_recalibration") or {}
    weights = MODEL_DIR / "generator.weights.h5"
    crops = meta["steps"] * t["batch_size"]
    rows = [
        ["recipe", _recipe(meta["config"])],
        ["loss", "mean squared error, no critic (`adversarial: false`)" if not t["adversarial"]
         else "WGAN critic + gray constraint"],
        ["generator", f"{'residual ' if m['residual'] else ''}U-Net, {m['ngf']} filters, depth "
                      f"{m['depth']}, {m['upsample']} upsampling"
                      + (", full-resolution stem and head" if m.get("full_resolution") else "")
                      + (", noise-level input channel" if m.get("sigma_map") else "")],
        ["weights", f"{weights.stat().st_size / 2**20:.1f} MiB" if weights.is_file() else "–"],
        ["training data", (f"{cfg['simulation']['fields']} simulated fields of "
                          f"{len(meta['data']['inputs']['clean'])} structures, "
                          f"σ {d['sigma']} ({d['sigma_draw'].replace('_', '-')})")],
        ["steps", f"{thousands(meta['steps'])} of {thousands(t['steps'])} asked for "
                  "(a wall-clock limit ended the run)" if meta["steps"] < t["steps"]
         else thousands(meta["steps"])],
        ["batch", f"{t['batch_size']} crops of {m['tile']}² ({crops / 1e6:.2f} M crops in all)"],
        ["optimiser", f"{t['g_optimizer'].title()} {t['g_lr']:g}, β1 {t['adam_beta1']:g}"],
        ["precision, backend, device", f"{t['precision']}, {env.get('backend', '?')}, {devices}"],
        ["training time", (f"{meta['train_seconds']:.0f} s "
                          f"({crops / meta['train_seconds']:,.0f} crops/s over the run)")],
        ["seed", meta["seed"]],
    ]
    if moving:
        rows.append(["validation PSNR, moving-average BatchNorm",
                     f"{moving[-1]['val_psnr']:.2f} dB (step {moving[-1]['step']:,})"])
    if recal:
        v = recal["validation"]
        rows.append([f"validation PSNR / SSIM, BatchNorm of {recal['crops']:,} crops",
                     (f"{v['val_psnr']:.2f} dB / {v['val_ssim']:.3f} (noisy input "
                     f"{v['val_psnr_noisy']:.2f} dB)")])
    return table(["", "shipped model (`cryoem_denoise/default_model/`)"], rows), path


def samples():
    path = ROOT / "data" / "manifest.json"
    data = load(path)
    rows = [[f"`{f['name']}`", f["kind"], f["description"],
             f["source"].replace("PyPI sdist ", ""), f["licence"]] for f in data["files"]]
    return table(["file", "kind", "what", "from (PyPI source distribution)", "licence"], rows), \
        path, "no machine (a list of files)"


def fuzz_images():
    path = RESULTS / "fuzz_images.json"
    data = load(path)
    rows = [[kind.upper() if kind != "cli" else "CLI (`info`)", thousands(k["examples"]),
             thousands(k["outcomes"].get("read", 0)), thousands(k["outcomes"].get("refused", 0)),
             thousands(k["failures"]), f"{k['seconds']:.0f}"]
            for kind, k in data["kinds"].items()]
    rows.append(["all", thousands(data["examples"]), "", "", thousands(data["failures"]),
                 f"{data['seconds']:.0f}"])
    return table(["files", "examples", "read", "refused (one line)", "failures", "seconds"],
                 rows), path


def pipeline():
    path = RESULTS / "pipeline.json"
    d = load(path)
    runs = d.get("runs") or [{"model_threads": 0, "modes": d.get("modes") or {"paper": d}}]
    rows = []
    for run in runs:
        threads = run["model_threads"]
        for mode, r in run["modes"].items():
            shape = "×".join(str(s) for s in r.get("model_shape", [d["side"], d["side"]]))
            rows.append([mode, "all" if not threads else str(threads),
                         f"{d['files']} × {d['side']}² → {shape}", thousands(r["tiles"]),
                         f"{r.get('tile', d.get('tile'))} / {d['overlap']}, batch ≤ "
                         f"{d['batch_size']}", f"{r['end_to_end_seconds']:.1f}",
                         f"{r['pure_seconds']:.1f}", f"{r['end_to_end_over_pure']:.2f}",
                         f"{r['seconds_per_file']:.2f}", f"{r['network_busy']:.0%}",
                         f"{r['network_seconds_in_run'] / r['pure_seconds']:.2f}"])
    return table(["run", "network's cores", "micrographs → model's image", "tiles",
                  "tile / overlap, batch", "end to end (s)", "pure compute (s)",
                  "end to end / pure", "s per micrograph", "network busy",
                  "network's calls / pure"], rows), path


def pipeline_instant():
    path = RESULTS / "pipeline.json"
    d = load(path)["instant"]
    rows = [[mode, f"{d['files']} × {d['side']}²", workers, f"{w['seconds_per_file']:.2f}",
             f"{w['files_per_second']:.2f}"]
            for mode, r in d["modes"].items() for workers, w in r["workers"].items()]
    return table(["run", "micrographs", "files per stage (`--workers`)", "s per micrograph",
                  "micrographs per second"], rows), path


def pipeline_stages():
    path = RESULTS / "pipeline.json"
    d = load(path)["instant"]
    stages = ["ahead", "network's thread", "behind"]
    rows = [[mode, *(f"{r['stage_seconds_per_file'][k]:.2f}" for k in stages)]
            for mode, r in d["modes"].items()]
    return table(["run", *(f"{k} (s per {d['side']}² micrograph)" for k in stages)],
                 rows), path


TABLES = {
    "critic": critic,
    "known-truth": known_truth,
    "known-truth-gaussian": known_truth_gaussian,
    "known-truth-finetune": known_truth_finetune,
    "pipeline": pipeline,
    "pipeline-instant": pipeline_instant,
    "pipeline-stages": pipeline_stages,
    "fuzz-images": fuzz_images,
    "shipped-model": shipped_model,
    "heldout-draw0": heldout_draw0,
    "heldout-draw1": heldout_draw1,
    "ablation": ablation,
    "table1": table1,
    "quality-simulated": quality_simulated,
    "quality-real": quality_real,
    "real-quality": real_quality,
    "real-micrographs": real_micrographs,
    "tiling": tiling,
    "real-noise": real_noise,
    "real-noise-spectral": real_noise_spectral,
    "training": training,
    "apply-cpu": apply_cpu,
    "apply-extra": apply_extra,
    "backends": backends,
    "evaluate": evaluate_time,
    "simulate": simulate_speed,
    "gpu-apply": gpu_apply,
    "samples": samples,
}


# -- single values in running text ----------------------------------------------------------
def _margin(scores, bm3d):
    d = [scores[s][0] - bm3d[s][0] for s in SIGMAS]
    return f"{min(d):+.2f} to {max(d):+.2f} dB"


def _draw0_margin():
    data = result("ablation.json")
    return _margin(data["arms"]["shipped"]["heldout"], data["bm3d"])


def _draw1_margin():
    scores = result("heldout_seed1.json")["scores"]
    return _margin(scores["shipped"], scores[next(k for k in scores if k.startswith("BM3D"))])


def _self_ensemble_gain():
    arms = result("ablation.json")["arms"]
    d = [arms["shipped, self-ensemble"]["heldout"][s][0] - arms["shipped"]["heldout"][s][0]
         for s in SIGMAS]
    return f"{min(d):+.2f} to {max(d):+.2f} dB"


def _table1_gain():
    s = _summary("simulated")["40.0"]
    return f"{s['gan']['psnr'] - s['noisy']['psnr']:+.1f} dB"


def _table1_over_bm3d():
    summary = _summary("simulated")
    d = [summary[s]["gan"]["psnr"] - summary[s]["bm3d"]["psnr"] for s in SIGMAS]
    return f"{min(d):+.1f} to {max(d):+.1f} dB"


def _real_noise_margin():
    rows = result("real_noise.json")["rows"]
    d = {}
    for r in rows:
        d.setdefault(r["dose"], {})[r["method"]] = r["psnr"]
    margins = [v["supervised"] - v["bm3d"] for v in d.values()]
    return f"{min(margins):+.1f} to {max(margins):+.1f} dB"


def _table1_bm3d_gain():
    s = _summary("simulated")["40.0"]
    return f"gains {s['bm3d']['psnr'] - s['noisy']['psnr']:.1f} dB"


def _sigma_estimated(name):
    return lambda: f"{result('tiling.json')['rows'][0]['fields'][name]['sigma_estimated']:.0f}"


def _shipped_over_previous_10():
    arms = result("ablation.json")["arms"]
    d0 = arms["shipped"]["heldout"]["10.0"][0] - arms["previous (CPU)"]["heldout"]["10.0"][0]
    scores = result("heldout_seed1.json")["scores"]
    previous = next(k for k in scores if k.startswith("previous"))
    d1 = scores["shipped"]["10.0"][0] - scores[previous]["10.0"][0]
    return f"{d0:+.2f} dB (draw 0) and {d1:+.2f} dB (draw 1)"


def _training_gflop():
    return f"{result('training.json')['flops_per_image_step'] / 1e9:.0f}"


def _tiling_default_seconds():
    default = _default_tiling()
    rows = result("tiling.json")["rows"]
    row = next((r for r in rows if default and (r["tile"], r["overlap"]) == default), rows[0])
    return f"{row['seconds_4k']:.1f} s"


def _model_crops_per_s():
    meta = load(MODEL_DIR / "metadata.json")
    return f"{meta['steps'] * meta['config']['train']['batch_size'] / meta['train_seconds']:,.0f}"


def _model_steps():
    return thousands(load(MODEL_DIR / "metadata.json")["steps"])


def _model_crops():
    meta = load(MODEL_DIR / "metadata.json")
    return f"{meta['steps'] * meta['config']['train']['batch_size'] / 1e6:.1f} M"


def _model_seconds():
    return f"{load(MODEL_DIR / 'metadata.json')['train_seconds']:.0f} s"


def _model_val():
    meta = load(MODEL_DIR / "metadata.json")
    return f"{meta['batch_norm_recalibration']['validation']['val_psnr']:.2f} dB"


VALUES = {
    "heldout-draw0-margin": _draw0_margin,
    "heldout-draw1-margin": _draw1_margin,
    "self-ensemble-gain": _self_ensemble_gain,
    "table1-gain-40": _table1_gain,
    "table1-over-bm3d": _table1_over_bm3d,
    "real-noise-margin": _real_noise_margin,
    "table1-bm3d-gain-40": _table1_bm3d_gain,
    "sigma-epu": _sigma_estimated("epu2.9_example.mrc"),
    "sigma-fei": _sigma_estimated("fei-extended.mrc"),
    "shipped-over-previous-10": _shipped_over_previous_10,
    "training-gflop-per-image": _training_gflop,
    "tiling-default-seconds": _tiling_default_seconds,
    "model-crops-per-s": _model_crops_per_s,
    "model-steps": _model_steps,
    "model-crops": _model_crops,
    "model-seconds": _model_seconds,
    "model-validation": _model_val,
}


# -- MkDocs events --------------------------------------------------------------------------
def on_startup(command, dirty):
    """Keep warnings visible under ``-q``: MkDocs' ``--quiet`` sets its logger to ERROR, and
    strict mode counts only the records the logger lets through, so ``mkdocs build --strict
    -q`` (``make docs``) would otherwise pass with broken links. Informational lines stay
    hidden."""
    logger = logging.getLogger("mkdocs")
    if logger.level > logging.WARNING:
        logger.setLevel(logging.WARNING)


def _render(match, page):
    kind, name = match.groups()
    registry = TABLES if kind == "table" else VALUES
    if name not in registry:
        raise PluginError(f"{page.file.src_uri}: unknown {kind} marker {name!r}")
    if kind == "value":
        return registry[name]()
    built = registry[name]()
    text, path = built[0], built[1]
    machine_text = built[2] if len(built) > 2 else None
    return f"{text}\n\n{stamp(path, machine_text=machine_text)}"


def on_page_markdown(markdown, page, config, files):
    return MARKER.sub(lambda m: _render(m, page), markdown)


def on_files(files, config):
    for uri, path in FIGURES.items():
        if not path.is_file():
            raise PluginError(f"docs/hooks.py: figure {path.relative_to(ROOT)} is missing")
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_pre_build(config):
    """Read the results afresh on every build (``mkdocs serve`` rebuilds in one process)."""
    load.cache_clear()
    last_commit.cache_clear()
