"""Denoise one micrograph with Topaz-Denoise's pretrained model; a benchmark peer only.

Run with the peers' environment (``make peers`` builds ``.venv-topaz``), never the package's:

    .venv-topaz/bin/python benchmarks/peers/topaz_denoise.py INPUT OUTPUT.npy [--threads N]

``INPUT`` is a 2D ``.npy`` array (any units) or an ``.mrc`` file (its first section). The
result is written as float32 ``.npy`` in the input's units. Topaz is called as its
``topaz denoise`` command calls it with its defaults: the pretrained ``unet`` model
(``unet_L2_v0.2.2``), no low-pass, Gaussian or deconvolution filter, patches of 1024 px with
500 px of padding (an image smaller than patch + padding on both sides runs whole), the
micrograph standardized by its own mean and standard deviation and restored afterwards.
Topaz's patches do not overlap in the output: they meet every 1024 px from the top-left
corner. Prints one JSON line: Topaz's version, model, patch settings and seconds.

This script imports only Topaz, PyTorch and NumPy; ``cryoem_denoise`` does not depend on it
(``benchmarks/bench_real_micrographs.py`` runs it in a subprocess).
"""

import argparse
import json
import sys
import time

import numpy as np

MODEL = "unet"  # what `topaz denoise` loads by default
PATCH_SIZE = 1024  # `topaz denoise --patch-size` default
PATCH_PADDING = 500  # `topaz denoise --patch-padding` default


def read(path):
    """The 2D image at ``path`` (``.npy`` or the first section of an ``.mrc``), float32."""
    if path.endswith(".npy"):
        image = np.load(path)
    else:
        from topaz.utils.data.loader import load_mrc

        image = load_mrc(path)[0]
    image = np.asarray(image, np.float32)
    if image.ndim == 3:
        image = image[0]
    if image.ndim != 2:
        raise SystemExit(f"need a 2D image, got shape {image.shape}")
    return np.ascontiguousarray(image)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help=".npy (2D) or .mrc")
    ap.add_argument("output", help="where to write the result (.npy)")
    ap.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: its default)")
    args = ap.parse_args(argv)

    import torch
    import topaz
    from topaz.denoise import Denoise, denoise_image

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    image = read(args.input)
    model = Denoise(MODEL, use_cuda=False)
    t0 = time.perf_counter()
    out = denoise_image(image, [model], patch_size=PATCH_SIZE, padding=PATCH_PADDING,
                        use_cuda=False)
    seconds = time.perf_counter() - t0
    out = np.asarray(out, np.float32)
    if out.shape != image.shape:
        raise SystemExit(f"Topaz returned shape {out.shape} for an image of {image.shape}")
    with open(args.output, "wb") as f:
        np.save(f, out)
    print(json.dumps({"topaz": topaz.__version__, "torch": torch.__version__, "model": MODEL,
                      "patch_size": PATCH_SIZE, "patch_padding": PATCH_PADDING,
                      "threads": torch.get_num_threads(), "shape": list(image.shape),
                      "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
