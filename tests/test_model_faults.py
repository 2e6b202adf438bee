"""Damaged model folders and interrupted runs (issue 22, item 3 and the model side of 4
and 6).

Every damaged file of a model folder (``config.json``, ``generator.weights.h5``,
``metadata.json``, a checkpoint) is one ``cryoem-denoise: error:`` line naming it, never a
traceback; ``fit --resume`` skips a damaged newest checkpoint (one warning line) and goes
on from the newest good one, bit for bit as the uninterrupted run; a run killed at any
moment resumes, or says that nothing usable was written; a full disk leaves no partial or
temporary file.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from cryoem_denoise import training
from cryoem_denoise.cli import cli
from cryoem_denoise.config import FitConfig, tiny_config
from cryoem_denoise.errors import InputError, InputWarning, OutputError
from cryoem_denoise.io import mrc
from cryoem_denoise.model import model_store

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The smallest run that has everything: 3 checkpoints (2 kept), losses, validation.
SMALL = ["--tiny", "--tile", "32", "--depth", "3", "--ngf", "4", "--ndf", "4",
         "--critic-layers", "1", "--batch-size", "1", "--steps", "6", "--checkpoint-every", "2",
         "--log-every", "2", "--validate-every", "3", "--seed", "3"]



@contextlib.contextmanager
def warns_input(match=None):
    """``pytest.warns(InputWarning)`` that, like the suite's filter, ignores Keras' NumPy-2
    deprecation notice (pytest.warns records every warning in its block)."""
    with pytest.warns(InputWarning, match=match) as record:
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"keras\.")
        yield record

def small_config(**train):
    """The config ``fit SMALL`` builds."""
    cfg = tiny_config(batch_size=1, steps=6, checkpoint_every=2, log_every=2,
                      validate_every=3, seed=3)
    cfg.model.tile, cfg.model.depth, cfg.model.ngf, cfg.model.ndf = 32, 3, 4, 4
    cfg.model.critic_layers = 1
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg.validate()


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def error_lines(result):
    return [line for line in result.stderr.splitlines()
            if line.strip() and not line.startswith("cryoem-denoise: warning: ")]


def assert_one_line(result, *fragments):
    """Exit 2 and exactly one ``cryoem-denoise: error:`` line holding ``fragments``."""
    lines = error_lines(result)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("cryoem-denoise: error: "), lines
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.output


def one_line(exc):
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text, text
    return text


def temporaries(folder):
    """Hidden (temporary) files anywhere under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


def checkpoint_arrays(folder, step=None):
    ckpts = model_store.checkpoint_paths(folder)
    path = dict(ckpts)[step] if step is not None else ckpts[-1][1]
    return model_store.load_checkpoint(path)


def assert_same_checkpoint(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def loss_rows(folder):
    """Loss CSV rows without the speed column (it varies)."""
    return [line.split(",")[:6] for line in (folder / model_store.LOSSES).read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    image = gaussian_filter(rng.normal(0, 1, (160, 144)), 3) * 20 + 100
    path = tmp_path_factory.mktemp("data") / "train.mrc"
    mrc.write_mrc(path, image.astype(np.float32))
    return path


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted run of the small config."""
    folder = tmp_path_factory.mktemp("reference") / "model"
    training.fit(small_config(), [data], folder)
    return folder


@pytest.fixture
def copy_of(tmp_path):
    def _copy(folder, name="model"):
        return shutil.copytree(folder, tmp_path / name)
    return _copy


# -- config.json -----------------------------------------------------------------------------
def _config_folder(tmp_path, edit=None, text=None):
    folder = tmp_path / "cfg"
    folder.mkdir(exist_ok=True)
    data = json.loads(small_config().to_json())
    if edit:
        edit(data)
    (folder / model_store.CONFIG).write_text(text if text is not None else json.dumps(data))
    return folder


def _set(section, key, value):
    return lambda d: d[section].__setitem__(key, value)


CONFIG_CASES = {
    "string for a number": (_set("model", "depth", "eight"),
                            "model.depth must be an integer, got 'eight'"),
    "float for an integer": (_set("train", "steps", 6.5), "train.steps must be an integer"),
    "bool for an integer": (_set("model", "ngf", True), "model.ngf must be an integer"),
    "string for a float": (_set("train", "g_lr", "fast"), "train.g_lr must be a number"),
    "NaN": (_set("train", "clip", float("nan")), "train.clip must be a finite number"),
    "number for a bool": (_set("data", "augment", 1), "data.augment must be true or false"),
    "number for a string": (_set("data", "sigma", 40), "data.sigma must be a string"),
    "bad range": (_set("simulation", "defocus_um", [1, 2, 3]),
                  "simulation.defocus_um must be a number or a [low, high] pair"),
    "null": (_set("model", "tile", None), "model.tile must be an integer, got null"),
    "section not an object": (lambda d: d.__setitem__("model", [1, 2]),
                              "model must be a JSON object of settings"),
    "unknown setting": (_set("model", "depht", 3), "unknown model setting(s): depht"),
    "unknown section": (lambda d: d.__setitem__("extra", {}), "unknown config section(s): extra"),
    "out of range": (_set("model", "dropout", 1.5), "dropout must be in [0, 1)"),
    "huge network": (_set("model", "ngf", 10 ** 9), "widest layer"),
    "huge depth": (_set("model", "depth", 10 ** 9), "model depth must be in 1-16"),
    "negative seed": (_set("train", "seed", -1), "seed must be in"),
    "percentiles reversed": (_set("data", "percentiles", [99, 1]), "percentiles must satisfy"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_schema_error_names_file_and_setting(tmp_path, case):
    edit, message = CONFIG_CASES[case]
    folder = _config_folder(tmp_path, edit)
    with pytest.raises(InputError) as info:
        model_store.load_config(folder)
    text = one_line(info.value)
    assert text.startswith(str(folder / model_store.CONFIG) + ": ") and message in text, text


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "must be a JSON object of sections"), ("{ not json", "not valid JSON"),
    ("", "not valid JSON"), ("1" * 5000, "not valid JSON"), ("[" * 100000, "not valid JSON"),
    ("\udcff", None)])
def test_config_not_an_object_is_one_line(tmp_path, text, message):
    folder = tmp_path / "cfg"
    folder.mkdir()
    if text == "\udcff":
        (folder / model_store.CONFIG).write_bytes(b'{"model": "\xff"}')
        message = "not UTF-8"
    else:
        (folder / model_store.CONFIG).write_text(text)
    with pytest.raises(InputError, match="config.json: ") as info:
        model_store.load_config(folder)
    assert message in one_line(info.value)


def test_old_model_folders_still_load(tmp_path):
    """Folders written by earlier versions: settings added since take their defaults."""
    shipped = model_store.load_config(os.path.join(ROOT, "cryoem_denoise", "default_model"))
    assert shipped.model.sigma_map and shipped.train.freeze_batch_norm is False
    for path in [os.path.join(ROOT, "training_runs", "quality", "config.json")]:
        if os.path.exists(path):
            with open(path) as fh:
                FitConfig.from_json(fh.read())
    # a config from before the simulation section and freeze_batch_norm
    folder = _config_folder(tmp_path, lambda d: (d.pop("simulation"),
                                                 d["train"].pop("freeze_batch_norm")))
    cfg = model_store.load_config(folder)
    assert cfg.simulation == FitConfig().simulation and cfg.train.freeze_batch_norm is False
    # and what this version writes loads as it was
    assert model_store.load_config(_config_folder(tmp_path)).to_dict() == small_config().to_dict()


def test_apply_with_a_damaged_config_is_one_line(reference, copy_of, data, tmp_path):
    folder = copy_of(reference)
    config = json.loads((folder / model_store.CONFIG).read_text())
    config["model"]["ngf"] = "four"
    (folder / model_store.CONFIG).write_text(json.dumps(config))
    result = run("apply", "-q", "--model", folder, "--out", tmp_path / "out", "--tile", "64",
                 "--overlap", "16", data)
    assert_one_line(result, "config.json", "model.ngf must be an integer, got 'four'")
    assert not (tmp_path / "out").exists()


# -- generator.weights.h5 ----------------------------------------------------------------------
def _other_architecture(path):
    from cryoem_denoise.model.models import build_generator

    other = small_config().model
    other.ngf = 8
    build_generator(other, seed=0).save_weights(str(path))


def _nan_weights(path):
    import h5py

    with h5py.File(path, "r+") as fh:
        fh["layers/conv2d/vars/0"][0, 0, 0, 0] = np.nan


WEIGHTS_CASES = {
    "random bytes behind the HDF5 signature":
        (lambda p: p.write_bytes(p.read_bytes()[:8] + os.urandom(p.stat().st_size - 8)),
         "not a readable weights file"),
    "damaged past the superblock":
        (lambda p: p.write_bytes(p.read_bytes()[:2048] + os.urandom(p.stat().st_size - 2048)),
         "weights"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:5000]),
                  "not a readable weights file (truncated)"),
    "empty": (lambda p: p.write_bytes(b""), "not a readable weights file (not an HDF5 file)"),
    "another architecture": (_other_architecture,
                             "layer enc1 kernel: (4, 4, 1, 8) in the file, (4, 4, 1, 4) in the model"),
    "NaN": (_nan_weights, "NaN or infinite"),
}


@pytest.mark.parametrize("case", sorted(WEIGHTS_CASES))
def test_damaged_weights_are_one_line(reference, copy_of, case):
    damage, message = WEIGHTS_CASES[case]
    folder = copy_of(reference)
    damage(folder / model_store.WEIGHTS)
    with pytest.raises(InputError) as info:
        model_store.load_generator(folder)
    text = one_line(info.value)
    assert text.startswith(str(folder / model_store.WEIGHTS) + ": ") and message in text, text


def test_apply_with_weights_of_another_model_is_one_line(reference, copy_of, data, tmp_path):
    folder = copy_of(reference)
    _other_architecture(folder / model_store.WEIGHTS)
    result = run("apply", "-q", "--model", folder, "--out", tmp_path / "out", "--tile", "64",
                 "--overlap", "16", data)
    assert_one_line(result, "generator.weights.h5", "layer enc1 kernel", "(4, 4, 1, 8)",
                    "(4, 4, 1, 4)")
    assert len(result.stderr) < 400  # not Keras' message


# -- metadata.json ---------------------------------------------------------------------------
METADATA_CASES = {
    "not JSON": ("{ truncated", "not valid JSON"),
    "a list": ("[1, 2, 3]", "a JSON object expected, got list"),
    "not UTF-8": (b"\xff\xfe{}", "not UTF-8"),
    "inputs not a list": (json.dumps({"data": {"inputs": {"clean": "x.mrc"}}}),
                          "data.inputs.clean"),
    "data not an object": (json.dumps({"data": 3}), "'data'"),
}


@pytest.mark.parametrize("case", sorted(METADATA_CASES))
def test_damaged_metadata(reference, copy_of, data, case):
    """Required to resume (one line naming it), ignored by inference (only the trained
    pixel sizes come from it)."""
    from cryoem_denoise.inference.denoiser import Denoiser

    content, message = METADATA_CASES[case]
    folder = copy_of(reference)
    path = folder / model_store.METADATA
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError) as info:
        model_store.saved_inputs(folder)
    text = one_line(info.value)
    assert text.startswith(str(path) + ": ") and message in text, text
    with pytest.raises(InputError, match="metadata.json"):
        training.fit(small_config(), [data], folder, resume=True)
    assert Denoiser.load(folder, tile=64, overlap=16).trained_pixel_sizes is None


def test_resume_with_damaged_metadata_is_one_line(reference, copy_of):
    folder = copy_of(reference)
    (folder / model_store.METADATA).write_text("{ not json")
    assert_one_line(run("fit", "-q", "--out", folder, "--resume"), "metadata.json",
                    "not valid JSON")


# -- checkpoints -------------------------------------------------------------------------------
def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside an array: the member fails its CRC
    path.write_bytes(bytes(raw))


def _wrong_arrays(path):
    arrays = model_store.load_checkpoint(path)
    arrays["generator/0000"] = np.zeros((2, 2), np.float32)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _wrong_step(path):
    arrays = model_store.load_checkpoint(path)
    arrays["step"] = np.array(99, np.int64)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


CHECKPOINT_CASES = {
    "empty": (lambda p: p.write_bytes(b""), "damaged checkpoint"),
    "truncated": (_truncate, "damaged checkpoint (BadZipFile"),
    "bad zip": (lambda p: p.write_bytes(b"PK\x03\x04" + os.urandom(3000)), "damaged checkpoint"),
    "flipped byte": (_flip_byte, "damaged checkpoint"),
    "not a zip": (lambda p: p.write_bytes(b"just text"), "damaged checkpoint"),
    "a lone .npy": (lambda p: np.save(p.with_suffix(".npy"), np.zeros(3))
                    or p.with_suffix(".npy").replace(p), "not an .npz archive"),
    "wrong arrays": (_wrong_arrays, "checkpoint does not fit this model"),
    "wrong step": (_wrong_step, "it holds step 99"),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_damaged_checkpoint_is_one_line(reference, copy_of, case):
    damage, message = CHECKPOINT_CASES[case]
    folder = copy_of(reference)
    path = dict(model_store.checkpoint_paths(folder))[6]
    damage(path)
    trainer = training.make_trainer(small_config())
    with pytest.raises(InputError) as info:
        trainer.set_state(model_store.load_checkpoint(path, 6), path)
    text = one_line(info.value)
    assert text.startswith(str(path) + ": ") and message in text, text


@pytest.mark.slow
@pytest.mark.parametrize("case", ["empty", "truncated", "wrong arrays"])
def test_damaged_newest_checkpoint_falls_back_to_the_good_one(reference, copy_of, data, case):
    """Killed while writing its final weights, the newest checkpoint damaged: resumed
    from the one before, the result is the uninterrupted run's, bit for bit."""
    folder = copy_of(reference)
    (folder / model_store.WEIGHTS).unlink()
    newest = dict(model_store.checkpoint_paths(folder))[6]
    CHECKPOINT_CASES[case][0](newest)
    with warns_input(r"ckpt-000000006\.npz: .*skipped, resuming from ckpt-000000004\.npz"):
        meta = training.fit(small_config(), [data], folder, resume=True)
    assert meta["steps"] == 6
    assert_same_checkpoint(checkpoint_arrays(reference), checkpoint_arrays(folder))
    assert loss_rows(folder) == loss_rows(reference)
    assert meta["validation"] == model_store.load_metadata(reference)["validation"]


def test_cli_resume_after_an_empty_newest_checkpoint(reference, copy_of):
    """The issue's case: a 0-byte newest checkpoint made --resume exit 130."""
    folder = copy_of(reference)
    (folder / model_store.WEIGHTS).unlink()
    dict(model_store.checkpoint_paths(folder))[6].write_bytes(b"")
    result = run("fit", "-q", "--out", folder, "--resume")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("cryoem-denoise: warning: "), warnings
    assert "ckpt-000000006.npz" in warnings[0] and "resuming from ckpt-000000004" in warnings[0]
    assert_same_checkpoint(checkpoint_arrays(reference), checkpoint_arrays(folder))


def test_no_good_checkpoint_trains_again_from_step_0(reference, copy_of, data):
    folder = copy_of(reference)
    (folder / model_store.WEIGHTS).unlink()
    for _, path in model_store.checkpoint_paths(folder):
        path.write_bytes(b"")
    with warns_input() as record:
        training.fit(small_config(), [data], folder, resume=True)
    messages = [str(w.message) for w in record if issubclass(w.category, InputWarning)]
    assert len(messages) == 3 and "training again from step 0" in messages[-1], messages
    assert_same_checkpoint(checkpoint_arrays(reference), checkpoint_arrays(folder))
    assert [s for s, _ in model_store.checkpoint_paths(folder)] == [4, 6]


def test_no_good_checkpoint_of_a_finished_model_is_an_error(reference, copy_of, data):
    folder = copy_of(reference)
    for _, path in model_store.checkpoint_paths(folder):
        path.write_bytes(b"")
    with warns_input(), pytest.raises(InputError, match="no usable checkpoint"):
        training.fit(small_config(), [data], folder, resume=True)
    assert (folder / model_store.WEIGHTS).exists()  # the model is not touched


# -- runs that wrote nothing usable --------------------------------------------------------------
def test_nothing_written_says_start_again(data, tmp_path):
    never = tmp_path / "never"
    with pytest.raises(InputError, match="nothing to resume.*does not exist.*without --resume"):
        training.fit(small_config(), [data], never, resume=True)
    assert not never.exists()
    # killed while writing its first file (metadata.json): a temporary file, no config
    folder = tmp_path / "early"
    (folder / model_store.CHECKPOINTS).mkdir(parents=True)
    (folder / ".metadata.json.abcd1234.part").write_text("{")
    with pytest.raises(InputError, match=f"nothing to resume: no {model_store.CONFIG}.*"
                                         "start it again without --resume") as info:
        training.fit(small_config(), [data], folder, resume=True)
    one_line(info.value)
    assert_one_line(run("fit", "-q", "--out", folder, "--resume"), str(folder),
                    model_store.CONFIG)
    # and starting again there needs no --overwrite; the temporary file is removed
    training.fit(small_config(steps=2), [data], folder)
    assert temporaries(folder) == [] and (folder / model_store.WEIGHTS).exists()


def test_config_without_recorded_inputs(reference, copy_of, data):
    """A folder of an earlier version killed between its config and its metadata: resumed
    when the images are given again, else one line saying how to go on."""
    folder = copy_of(reference)
    for name in (model_store.WEIGHTS, model_store.METADATA, model_store.LOSSES):
        (folder / name).unlink()
    shutil.rmtree(folder / model_store.CHECKPOINTS)
    result = run("fit", "-q", "--out", folder, "--resume")
    assert_one_line(result, "cannot resume", "without --resume", "give its images")
    training.fit(small_config(), [data], folder, resume=True)
    assert_same_checkpoint(checkpoint_arrays(reference), checkpoint_arrays(folder))


def test_overwrite_removes_the_old_run_first(reference, copy_of, data, monkeypatch):
    """--overwrite into a finished model folder, killed before its config: no config
    beside the old weights (apply would load them into the new network)."""
    folder = copy_of(reference)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_store, "save_config", interrupted)
    with pytest.raises(KeyboardInterrupt):
        training.fit(small_config(steps=2), [data], folder, overwrite=True)
    names = sorted(p.name for p in folder.iterdir())
    assert model_store.CONFIG not in names and model_store.WEIGHTS not in names, names
    assert model_store.checkpoint_paths(folder) == []


# -- a full disk ---------------------------------------------------------------------------------
def _enospc_at(monkeypatch, name, nth=1):
    """Make the ``nth`` atomic write of ``name`` fail with ENOSPC (as a full disk does)."""
    import errno

    from cryoem_denoise.io import atomic

    real, seen = atomic.os.replace, []

    def replace(src, dst, *args, **kwargs):
        if os.path.basename(dst) == name:
            seen.append(dst)
            if len(seen) == nth:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "replace", replace)


@pytest.mark.parametrize("name, nth, kept", [
    (model_store.METADATA, 1, False), (model_store.CONFIG, 1, False),
    (model_store.LOSSES, 1, False), ("ckpt-000000002.npz", 1, False),
    pytest.param(model_store.METADATA, 3, True, marks=pytest.mark.slow),
    (model_store.WEIGHTS, 1, True)])
def test_full_disk_is_one_line_and_leaves_nothing_partial(data, tmp_path, monkeypatch, name,
                                                         nth, kept):
    """Before the first checkpoint the run's folder is removed again; after it, what is
    there is complete (and resumes), and no temporary file is left."""
    _enospc_at(monkeypatch, name, nth)
    folder = tmp_path / "model"
    with pytest.raises(OutputError, match="no space left on device") as info:
        training.fit(small_config(steps=4), [data], folder)
    assert one_line(info.value).startswith(str(folder))
    if not kept:
        assert not folder.exists()
        return
    assert temporaries(folder) == []
    assert model_store.checkpoint_paths(folder)
    monkeypatch.undo()
    training.fit(small_config(steps=4), [data], folder, resume=True)
    assert (folder / model_store.WEIGHTS).exists() and temporaries(folder) == []


def test_full_disk_in_an_existing_folder_keeps_the_folder(data, tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's")
    _enospc_at(monkeypatch, model_store.CONFIG)
    with pytest.raises(OutputError, match="no space left on device"):
        training.fit(small_config(), [data], folder)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size)``: a small file system of its own (root only)."""
    mounted = []

    def _mount(size):
        path = tmp_path / f"disk{len(mounted)}"
        path.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(path)
        return path

    yield _mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.slow
@pytest.mark.skipif(not IS_ROOT or not shutil.which("mount"), reason="mounting needs root")
def test_real_full_disk_through_the_cli(data, tmpfs):
    """A disk full at the first checkpoint: one line, nothing left. A disk full at the
    final weights (HDF5 writes them: its own errors, its own messages on closing): one
    line, the checkpoints kept, no temporary file."""
    args = ["fit", "-q", *SMALL, "--steps", "2", "--checkpoint-every", "2", data]
    disk = tmpfs("24k")
    result = run(*[a for a in args], "--out", disk / "model")
    assert_one_line(result, "no space left on device")
    assert list(disk.iterdir()) == []
    # room for the checkpoint (of 2 networks, 2 optimisers) and not for the weights
    disk = tmpfs("160k")
    result = run(*args, "--out", disk / "model")
    assert_one_line(result, model_store.WEIGHTS, "no space left on device")
    assert temporaries(disk) == [] and model_store.checkpoint_paths(disk / "model")


# -- killed at any moment --------------------------------------------------------------------------
#: Runs the CLI and kills itself (SIGKILL) at a point given by KILL_AT: the NTH atomic write
#: of NAME (``NAME#NTH``: its temporary file is complete, not yet renamed), the trainer's
#: construction (``make_trainer``), or the start of step S (``step#S``).
KILLER = textwrap.dedent("""
    import os, signal, sys
    name, _, nth = os.environ["KILL_AT"].partition("#")
    nth = int(nth or 1)
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    real_replace, seen = os.replace, [0]

    def replace(src, dst, *args, **kwargs):
        if os.path.basename(dst) == name:
            seen[0] += 1
            if seen[0] == nth:
                die()
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace
    if name in ("make_trainer", "step"):
        from cryoem_denoise.training import loop
        real_make = loop.make_trainer

        def make_trainer(*args, **kwargs):
            if name == "make_trainer":
                die()
            trainer = real_make(*args, **kwargs)
            real_step = trainer.step
            trainer.step = lambda s: die() if s == nth else real_step(s)
            return trainer

        loop.make_trainer = make_trainer
    from cryoem_denoise.cli import main
    main(sys.argv[1:])
""")

#: Two chains of kills, run side by side, each run continuing the folder the one before
#: left: (what kills it, whether it leaves nothing usable, so that the next run starts
#: again without --resume).
KILL_CHAINS = [
    [("metadata.json#1", True),          # its first file: nothing usable
     ("config.json#1", True),            # metadata written, no config: nothing usable
     ("make_trainer", False),            # config and inputs written: resumes from step 0
     ("losses.csv#1", False),            # the first loss rows (step 2)
     ("metadata.json#2", False),         # the record of step 2 (#1: step 0's, resumed)
     ("ckpt-000000002.npz#1", False)],   # the first checkpoint
    [("step#3", False),                  # in the middle of training
     ("metadata.json#1", False),         # step 4's record (resumed from checkpoint 2)
     ("ckpt-000000004.npz#1", False),
     ("ckpt-000000006.npz#1", False),    # the last checkpoint
     ("generator.weights.h5#1", False),  # the final weights
     ("metadata.json#1", False)],        # the final metadata (resumed from checkpoint 6)
]


def _assert_same_run(reference, folder):
    """``folder`` ends as the uninterrupted ``reference``: checkpoints, losses, validation
    and weights bit for bit, no temporary file."""
    import h5py

    assert temporaries(folder) == []
    assert_same_checkpoint(checkpoint_arrays(reference), checkpoint_arrays(folder))
    assert_same_checkpoint(checkpoint_arrays(reference, 4), checkpoint_arrays(folder, 4))
    assert loss_rows(folder) == loss_rows(reference)
    meta, ref_meta = model_store.load_metadata(folder), model_store.load_metadata(reference)
    assert meta["validation"] == ref_meta["validation"] and meta["steps"] == 6
    with h5py.File(reference / model_store.WEIGHTS) as a, h5py.File(folder / model_store.WEIGHTS) as b:
        keys = []
        a.visit(keys.append)
        for key in keys:
            if isinstance(a[key], h5py.Dataset):
                np.testing.assert_array_equal(a[key][()], b[key][()], err_msg=key)


@pytest.mark.slow
def test_killed_at_any_moment_resumes_bit_for_bit(reference, data, tmp_path):
    """SIGKILL at 12 points, inside each kind of write: each time the next run (``fit --out
    DIR --resume``, or a plain ``fit`` where nothing usable was written) goes on, and the
    end is the uninterrupted run's checkpoint, weights, losses and validation, bit for bit,
    with no temporary file left."""
    folders = [tmp_path / f"chain{i}" for i in range(len(KILL_CHAINS))]
    for kills in zip(*KILL_CHAINS):
        procs = []
        for folder, (kill_at, _) in zip(folders, kills):
            args = ["fit", "-q", "--out", folder, "--resume"] \
                if (folder / model_store.CONFIG).exists() else ["fit", "-q", *SMALL, "--out", folder, data]
            procs.append(subprocess.Popen(
                [sys.executable, "-c", KILLER, *map(str, args)], stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True,
                env={**os.environ, "KILL_AT": kill_at, "TF_CPP_MIN_LOG_LEVEL": "3"}))
        for folder, (kill_at, nothing_usable), proc in zip(folders, kills, procs):
            _, stderr = proc.communicate(timeout=300)
            assert proc.returncode == -signal.SIGKILL, (kill_at, stderr[-2000:])
            assert (folder / model_store.CONFIG).exists() is not nothing_usable, kill_at
            if nothing_usable:
                assert_one_line(run("fit", "-q", "--out", folder, "--resume"), str(folder))
                with pytest.raises(InputError, match="nothing to resume"):
                    training.fit(small_config(), [data], folder, resume=True)
    for folder in folders:
        result = run("fit", "-q", "--out", folder, "--resume")
        assert result.exit_code == 0, result.output
        _assert_same_run(reference, folder)
