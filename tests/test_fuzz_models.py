"""Fuzzing model folders (issue 22, item 6): mutated ``config.json``, ``metadata.json``,
checkpoints and weights.

A small model folder is trained once; each example damages one of its files (values of the
wrong type or out of range, missing and unknown keys, another JSON structure, bytes
flipped, overwritten, inserted, the file truncated) and loads it in-process
(:func:`model_store.load_config`, :func:`~model_store.saved_inputs` /
:func:`~model_store.run_record`, :func:`~model_store.load_checkpoint` with the trainer's
``set_state``, :func:`~model_store.load_generator`). Each must give either

- a correct result: the config holds what the file says (defaults for the rest) and
  passes validation; a checkpoint that loads holds the original arrays (a zip member
  fails its CRC otherwise); weights that load have the network's shapes and are finite;
- or one :class:`CryoEMDenoiseError` naming the file, on one line,

and nothing else: no other exception, no hang (a SIGALRM guard), no file left behind. A
few examples of each go through the CLI (``apply --model DIR``, ``fit --resume``): exit 0,
or exit 2 with exactly one ``cryoem-denoise: error:`` line.

Deterministic (``derandomize``: the same examples on every run) and bounded: about 60 s in
all on a 2-core machine.
"""

import copy
import dataclasses
import datetime
import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

import fuzzing
from cryoem_denoise import training
from cryoem_denoise.cli import cli
from cryoem_denoise.config import FitConfig, tiny_config
from cryoem_denoise.errors import CryoEMDenoiseError
from cryoem_denoise.io import mrc
from cryoem_denoise.model import model_store

#: Examples of each property (the CLI ones train or denoise: a second or two each).
EXAMPLES = {"config": 300, "metadata": 200, "checkpoint": 150, "weights": 40,
            "cli_config": 6, "cli_metadata": 4, "cli_checkpoint": 3, "cli_weights": 4}
#: Seconds one example may take before it counts as a hang.
HANG_SECONDS = 30


def small_config():
    cfg = tiny_config(batch_size=1, steps=4, checkpoint_every=2, log_every=2,
                      validate_every=2, seed=5)
    cfg.model.tile, cfg.model.depth, cfg.model.ngf, cfg.model.ndf = 32, 3, 4, 4
    cfg.model.critic_layers = 1
    return cfg.validate()


def fuzz_settings(examples):
    return settings(max_examples=examples, derandomize=True, database=None,
                    deadline=datetime.timedelta(seconds=HANG_SECONDS), print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module", autouse=True)
def hypothesis_home(tmp_path_factory):
    """Hypothesis' own files in a temporary folder, not in the working tree."""
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    set_hypothesis_home_dir(None)


def time_limit(seconds=HANG_SECONDS):
    return fuzzing.time_limit(seconds)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small finished run: config, metadata, checkpoints 2 and 4, weights; and its input."""
    from scipy.ndimage import gaussian_filter

    root = tmp_path_factory.mktemp("fuzz_models")
    rng = np.random.default_rng(1)
    image = (gaussian_filter(rng.normal(0, 1, (96, 96)), 3) * 20 + 100).astype(np.float32)
    mrc.write_mrc(root / "train.mrc", image)
    training.fit(small_config(), [root / "train.mrc"], root / "model")
    return root / "model"


@pytest.fixture(scope="module")
def trainer():
    return training.make_trainer(small_config())


@pytest.fixture
def scratch(tmp_path):
    """A fresh folder for each example: ``scratch()``."""
    count = [0]

    def _new():
        count[0] += 1
        folder = tmp_path / f"ex{count[0]}"
        folder.mkdir()
        return folder

    return _new


def check_error(exc, path):
    """One line, naming ``path``."""
    assert isinstance(exc, CryoEMDenoiseError), repr(exc)
    text = str(exc)
    assert text.startswith(f"{path}: ") and len(text) > len(str(path)) + 2, text
    assert "\n" not in text and "\r" not in text, text


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def check_cli(result):
    """Exit 0, or exit 2 and exactly one error line (warning lines allowed); no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith("cryoem-denoise: warning: ")]
    assert "Traceback" not in result.output, result.output
    if result.exit_code == 0:
        assert errors == [], lines
    else:
        assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
        assert len(errors) == 1 and errors[0].startswith("cryoem-denoise: error: "), lines


# -- mutations -----------------------------------------------------------------------------------
SECTIONS = [f.name for f in dataclasses.fields(FitConfig)]
FIELDS = [(s.name, f.name) for s in dataclasses.fields(FitConfig)
          for f in dataclasses.fields(s.default_factory)]

json_scalars = st.one_of(
    st.none(), st.booleans(),
    st.sampled_from([0, 1, -1, 2, 3, 7, 8, 16, 64, 255, 10 ** 9, 2 ** 63, -(2 ** 70)]),
    st.integers(-1000, 1000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.5, 1.0, 1e-300, 1e300, -0.0]),
    st.text(max_size=8),
    st.sampled_from(["10:80", "40", "nan", "inf:1", "", "transpose", "resize", "minmax",
                     "robust", "batch", "adam", "clean", "pairs", "default", "float32"]))
json_values = st.recursive(
    json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                          st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)


@st.composite
def number_near(draw, value):
    """A number near a setting's valid value: the kind of change a hand edit makes."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return draw(json_scalars)
    change = draw(st.sampled_from(["+1", "-1", "x2", "/2", "neg", "0", "x1000"]))
    out = {"+1": value + 1, "-1": value - 1, "x2": value * 2, "/2": value / 2, "neg": -value,
           "0": 0 * value, "x1000": value * 1000}[change]
    return int(out) if isinstance(value, int) and change != "/2" else out


@st.composite
def byte_edit(draw, size):
    """``(kind, position, payload)`` for :func:`apply_byte_edit` on ``size`` bytes."""
    kind = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate", "zero"]))
    position = draw(st.integers(0, max(size - 1, 0)))
    payload = draw(st.binary(min_size=1, max_size=16))
    return kind, position, payload


def apply_byte_edit(raw, edit):
    kind, pos, payload = edit
    raw = bytearray(raw)
    pos = min(pos, max(len(raw) - 1, 0))  # an earlier edit may have shortened it
    if not raw:
        return bytes(payload) if kind in ("overwrite", "insert") else b""
    if kind == "flip":
        raw[pos] ^= payload[0] or 1
    elif kind == "overwrite":
        raw[pos:pos + len(payload)] = payload
    elif kind == "insert":
        raw[pos:pos] = payload
    elif kind == "delete":
        del raw[pos:pos + len(payload)]
    elif kind == "truncate":
        del raw[pos:]
    else:
        raw[pos:pos + 64 * len(payload)] = bytes(min(64 * len(payload), len(raw) - pos))
    return bytes(raw)


@st.composite
def json_edit(draw, fields):
    """One change of a JSON document: ``(kind, where, value)``."""
    kind = draw(st.sampled_from(["set", "set", "near", "delete", "unknown", "replace"]))
    where = draw(st.sampled_from(fields))
    value = draw(json_values)
    return kind, where, value


def apply_json_edit(doc, edit):
    kind, where, value = edit
    section, key = where if isinstance(where, tuple) else (where, None)
    if kind == "replace":
        return value
    if not isinstance(doc, dict):
        return doc
    target = doc.get(section) if key is not None else doc
    name = key if key is not None else section
    if not isinstance(target, dict):
        return doc
    if kind in ("set", "near"):
        target[name] = value
    elif kind == "delete":
        target.pop(name, None)
    elif kind == "unknown":
        target[f"{name}_x"] = value
    return doc


# -- config.json -----------------------------------------------------------------------------------
@st.composite
def config_case(draw):
    doc = json.loads(small_config().to_json())
    text = None
    for _ in range(draw(st.integers(1, 3))):
        edit = draw(json_edit(FIELDS + [(s, None) for s in SECTIONS]))
        if edit[0] == "near" and isinstance(edit[1], tuple) and edit[1][1] is not None \
                and isinstance(doc, dict) and isinstance(doc.get(edit[1][0]), dict):
            edit = ("set", edit[1], draw(number_near(doc[edit[1][0]].get(edit[1][1]))))
        doc = apply_json_edit(doc, edit)
    if draw(st.integers(0, 9)) == 0:  # damaged text rather than another document
        raw = json.dumps(doc).encode()
        text = apply_byte_edit(raw, draw(byte_edit(len(raw))))
    return doc, text


def _expected_value(value):
    return json.loads(json.dumps(value))


def check_config(folder, doc, text):
    path = folder / model_store.CONFIG
    path.write_bytes(text if text is not None else json.dumps(doc).encode())
    try:
        with time_limit():
            cfg = model_store.load_config(folder)
    except CryoEMDenoiseError as exc:
        check_error(exc, path)
        return
    cfg.validate()
    if text is None:  # the config holds what the file says, the defaults for the rest
        loaded = json.loads(cfg.to_json())
        for section, values in doc.items():
            for key, value in values.items():
                assert loaded[section][key] == _expected_value(value), (section, key, value)


@fuzz_settings(EXAMPLES["config"])
@given(case=config_case())
def test_fuzz_config_json(scratch, case):
    check_config(scratch(), *case)


def test_config_examples_do_load(scratch):
    """The property is not vacuous: valid edits load."""
    doc = json.loads(small_config().to_json())
    doc["train"]["g_lr"], doc["model"]["dropout"] = 1, 0.25
    del doc["simulation"]
    check_config(scratch(), doc, None)


@fuzz_settings(EXAMPLES["cli_config"])
@given(edit=st.tuples(st.sampled_from([k for s, k in FIELDS if s == "model"]),
                      st.one_of(json_scalars, st.sampled_from([1, 2, 4, 8, 16, 0.0, 0.3]))))
def test_fuzz_config_through_apply(model, scratch, edit):
    folder = scratch()
    shutil.copytree(model, folder / "model", ignore=shutil.ignore_patterns("checkpoints", "logs"))
    doc = json.loads((folder / "model" / model_store.CONFIG).read_text())
    doc["model"][edit[0]] = edit[1]
    (folder / "model" / model_store.CONFIG).write_text(json.dumps(doc))
    with time_limit():
        result = run("apply", "-q", "--model", folder / "model", "--out", folder / "out",
                     "--tile", "64", "--overlap", "16", model.parent / "train.mrc")
    check_cli(result)
    if result.exit_code == 2:
        assert not (folder / "out").exists() or not list((folder / "out").iterdir())


# -- metadata.json ---------------------------------------------------------------------------------
META_FIELDS = [("data", "inputs"), ("data", "fingerprint"), ("data", None), ("validation", None),
               ("train_seconds", None), ("steps", None), ("config", None)]


@st.composite
def metadata_case(draw, original):
    doc = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        doc = apply_json_edit(doc, draw(json_edit(META_FIELDS)))
    if draw(st.booleans()) and isinstance(doc, dict) and isinstance(doc.get("data"), dict) \
            and isinstance(doc["data"].get("inputs"), dict):
        doc["data"]["inputs"][draw(st.sampled_from(["clean", "noisy"]))] = draw(json_values)
    raw = json.dumps(doc).encode()
    if draw(st.integers(0, 4)) == 0:
        raw = apply_byte_edit(raw, draw(byte_edit(len(raw))))
    return raw


def check_metadata(folder, raw):
    path = folder / model_store.METADATA
    path.write_bytes(raw)
    try:
        with time_limit():
            record = model_store.run_record(folder)
    except CryoEMDenoiseError as exc:
        check_error(exc, path)
        return None
    clean, noisy = record["inputs"]
    assert all(isinstance(p, str) for p in clean)
    assert noisy is None or len(noisy) == len(clean)
    assert all(isinstance(h["step"], int) for h in record["validation"])
    assert np.isfinite(record["train_seconds"])
    return record


@fuzz_settings(EXAMPLES["metadata"])
@given(data=st.data())
def test_fuzz_metadata_json(model, scratch, data):
    original = json.loads((model / model_store.METADATA).read_text())
    check_metadata(scratch(), data.draw(metadata_case(original)))


@fuzz_settings(EXAMPLES["cli_metadata"])
@given(data=st.data())
def test_fuzz_metadata_through_resume(model, scratch, data):
    original = json.loads((model / model_store.METADATA).read_text())
    folder = scratch() / "model"
    shutil.copytree(model, folder)
    (folder / model_store.METADATA).write_bytes(data.draw(metadata_case(original)))
    with time_limit(120):
        check_cli(run("fit", "-q", "--out", folder, "--resume"))


# -- checkpoints -----------------------------------------------------------------------------------
@fuzz_settings(EXAMPLES["checkpoint"])
@given(data=st.data())
def test_fuzz_checkpoint_bytes(model, trainer, scratch, data):
    step, original = model_store.checkpoint_paths(model)[-1]
    raw = original.read_bytes()
    for _ in range(data.draw(st.integers(1, 3))):
        raw = apply_byte_edit(raw, data.draw(byte_edit(len(raw))))
    path = scratch() / original.name
    path.write_bytes(raw)
    try:
        with time_limit():
            arrays = model_store.load_checkpoint(path, step)
            trainer.set_state(arrays, path)
    except CryoEMDenoiseError as exc:
        check_error(exc, path)
        return
    good = model_store.load_checkpoint(original)
    assert arrays.keys() == good.keys()
    for key in good:
        np.testing.assert_array_equal(arrays[key], good[key], err_msg=key)


@fuzz_settings(EXAMPLES["cli_checkpoint"])
@given(data=st.data())
def test_fuzz_checkpoint_through_resume(model, scratch, data):
    """A damaged newest checkpoint of an unfinished run: resumed from the one before."""
    folder = scratch() / "model"
    shutil.copytree(model, folder)
    (folder / model_store.WEIGHTS).unlink()
    newest = model_store.checkpoint_paths(folder)[-1][1]
    newest.write_bytes(apply_byte_edit(newest.read_bytes(),
                                       data.draw(byte_edit(newest.stat().st_size))))
    with time_limit(120):
        result = run("fit", "-q", "--out", folder, "--resume")
    check_cli(result)
    assert result.exit_code == 0


# -- weights ---------------------------------------------------------------------------------------
@fuzz_settings(EXAMPLES["weights"])
@given(data=st.data())
def test_fuzz_weights_bytes(model, scratch, data):
    import keras

    folder = scratch()
    shutil.copy(model / model_store.CONFIG, folder)
    raw = (model / model_store.WEIGHTS).read_bytes()
    for _ in range(data.draw(st.integers(1, 2))):
        raw = apply_byte_edit(raw, data.draw(byte_edit(len(raw))))
    path = folder / model_store.WEIGHTS
    path.write_bytes(raw)
    try:
        with time_limit():
            generator, _ = model_store.load_generator(folder)
    except CryoEMDenoiseError as exc:
        check_error(exc, path)
        return
    for v in generator.weights:
        assert np.isfinite(keras.ops.convert_to_numpy(v.value)).all()
    assert sorted(os.listdir(folder)) == [model_store.CONFIG, model_store.WEIGHTS]


@fuzz_settings(EXAMPLES["cli_weights"])
@given(data=st.data())
def test_fuzz_weights_through_apply(model, scratch, data):
    folder = scratch()
    shutil.copytree(model, folder / "model", ignore=shutil.ignore_patterns("checkpoints", "logs"))
    path = folder / "model" / model_store.WEIGHTS
    path.write_bytes(apply_byte_edit(path.read_bytes(), data.draw(byte_edit(path.stat().st_size))))
    with time_limit(120):
        check_cli(run("apply", "-q", "--model", folder / "model", "--out", folder / "out",
                      "--tile", "64", "--overlap", "16", model.parent / "train.mrc"))
