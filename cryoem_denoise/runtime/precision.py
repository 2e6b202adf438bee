"""Numeric precision policies and device discovery.

``auto`` means ``mixed_float16`` on a GPU (with loss scaling) and ``float32`` on a CPU;
``mixed_bfloat16`` is worth asking for on CPUs with AVX-512 BF16 or AMX, where it is about
twice as fast as float32 for the generator. On CPUs without them, bfloat16 is emulated and
several times *slower* than float32 (measured: 8x for a 16-filter generator's train step on
an AVX2-only AMD EPYC), so :func:`bf16_warning` says so when it is asked for there.
"""

import contextlib
from pathlib import Path

from cryoem_denoise.errors import ConfigError
from cryoem_denoise.runtime.backend import gpus as backend_gpus

#: /proc/cpuinfo flags of native bfloat16 arithmetic (x86: AVX-512 BF16, AMX; Arm: BF16).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def gpus():
    """The accelerators the Keras backend sees (see :func:`cryoem_denoise.runtime.backend.gpus`)."""
    return backend_gpus()


def check_precision(precision):
    """Refuse a precision this machine cannot run usefully (before any work).

    Raises
    ------
    ConfigError
        ``mixed_float16`` without a GPU: CPUs have no fast float16 arithmetic (and
        TensorFlow's and XLA's CPU kernels emulate it), so it is refused rather than run
        many times slower than float32.
    """
    if precision == "mixed_float16" and not gpus():
        raise ConfigError("mixed_float16 needs a GPU; on a CPU use --precision float32 "
                          "(or mixed_bfloat16 on CPUs with AVX-512 BF16/AMX)")
    return precision


def resolve(precision):
    """Turn ``'auto'`` into a concrete Keras policy name."""
    if precision == "auto":
        return "mixed_float16" if gpus() else "float32"
    return precision


def cpu_info(cpuinfo="/proc/cpuinfo"):
    """``(model name, set of feature flags)`` of the CPU; ``(None, None)`` if unreadable."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None, None
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("flags", "Features"):
            flags.update(value.split())
        elif key == "model name" and model is None:
            model = value.strip()
    return model, flags


def cpu_has_native_bf16(cpuinfo="/proc/cpuinfo"):
    """Whether the CPU advertises native bfloat16 arithmetic; ``None`` if it cannot tell."""
    _, flags = cpu_info(cpuinfo)
    return None if flags is None else any(f in flags for f in BF16_CPU_FLAGS)


def bf16_warning(precision, cpuinfo="/proc/cpuinfo"):
    """A one-line warning if ``precision`` is bfloat16 on a CPU without native support.

    Returns ``None`` when there is nothing to say (another precision, a GPU present, a CPU
    with AVX-512 BF16/AMX, or no way to tell).
    """
    if precision != "mixed_bfloat16" or gpus():
        return None
    if cpu_has_native_bf16(cpuinfo) is False:
        return ("mixed_bfloat16 on a CPU without AVX-512 BF16 or AMX is emulated and usually "
                "slower than float32; consider --precision float32")
    return None


@contextlib.contextmanager
def precision_policy(precision):
    """Set the Keras global dtype policy for models built inside; restore it after."""
    import keras  # lazy: imports Keras

    old = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(resolve(precision))
    try:
        yield resolve(precision)
    finally:
        keras.mixed_precision.set_global_policy(old)
