"""Precision policies: 'auto' resolution, the bfloat16-on-a-plain-CPU warning, float16 refusal."""

import pytest

from cryoem_denoise.runtime import precision

AVX2_ONLY = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse sse2 avx avx2 fma\n"
WITH_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16\n"


def test_cpu_flags_are_read(tmp_path):
    plain, bf16 = tmp_path / "plain", tmp_path / "bf16"
    plain.write_text(AVX2_ONLY)
    bf16.write_text(WITH_BF16)
    assert precision.cpu_has_native_bf16(plain) is False
    assert precision.cpu_has_native_bf16(bf16) is True
    assert precision.cpu_has_native_bf16(tmp_path / "missing") is None
    assert precision.cpu_info(plain) == ("AMD EPYC", {"fpu", "sse", "sse2", "avx", "avx2", "fma"})
    assert precision.cpu_info(tmp_path / "missing") == (None, None)


def test_bf16_warning_only_where_it_is_emulated(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "gpus", lambda: [])
    plain, bf16 = tmp_path / "plain", tmp_path / "bf16"
    plain.write_text(AVX2_ONLY)
    bf16.write_text(WITH_BF16)
    message = precision.bf16_warning("mixed_bfloat16", plain)
    assert "float32" in message and "\n" not in message
    assert precision.bf16_warning("mixed_bfloat16", bf16) is None
    assert precision.bf16_warning("float32", plain) is None
    assert precision.bf16_warning("mixed_bfloat16", tmp_path / "missing") is None
    monkeypatch.setattr(precision, "gpus", lambda: ["GPU:0"])
    assert precision.bf16_warning("mixed_bfloat16", plain) is None


def test_auto_is_float32_without_a_gpu(monkeypatch):
    monkeypatch.setattr(precision, "gpus", lambda: [])
    assert precision.resolve("auto") == "float32"
    monkeypatch.setattr(precision, "gpus", lambda: ["GPU:0"])
    assert precision.resolve("auto") == "mixed_float16"
    assert precision.resolve("mixed_bfloat16") == "mixed_bfloat16"


def test_mixed_float16_needs_a_gpu(monkeypatch):
    from cryoem_denoise.errors import ConfigError

    monkeypatch.setattr(precision, "gpus", lambda: [])
    with pytest.raises(ConfigError, match="mixed_float16 needs a GPU"):
        precision.check_precision("mixed_float16")
    assert precision.check_precision("float32") == "float32"
    monkeypatch.setattr(precision, "gpus", lambda: ["GPU:0"])
    assert precision.check_precision("mixed_float16") == "mixed_float16"
