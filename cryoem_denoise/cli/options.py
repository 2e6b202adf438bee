"""Command-line options generated from config fields declared with
:func:`cryoem_denoise.config.option`: one declaration per option (name, type, choices, help,
default) in the config, turned into click options here."""

import dataclasses
import math

import click

__all__ = ["Number", "COUNT", "SEED", "config_fields", "config_options", "given_options"]


class Number(click.ParamType):
    """A finite int or float in an optional range, checked when the option is parsed.

    Parameters
    ----------
    kind : type
        ``int`` or ``float``.
    low, high : float, optional
        Bounds; ``low_open``/``high_open`` exclude the bound itself.
    """

    def __init__(self, kind=float, low=None, high=None, low_open=False, high_open=False):
        self.kind, self.low, self.high = kind, low, high
        self.low_open, self.high_open = low_open, high_open
        self.name = "integer" if kind is int else "float"

    def _range(self):
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return " and ".join(parts)

    def convert(self, value, param, ctx):
        if isinstance(value, self.kind) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = self.kind(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a{'n integer' if self.kind is int else ' number'}",
                          param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        low_bad = self.low is not None and (number <= self.low if self.low_open else number < self.low)
        high_bad = self.high is not None and (number >= self.high if self.high_open
                                               else number > self.high)
        if low_bad or high_bad:
            self.fail(f"{value!r} is not {self._range()}", param, ctx)
        return number

    def get_metavar(self, param, ctx=None):
        return self.name.upper()


#: A count: a whole number >= 1.
COUNT = Number(int, low=1)
#: A random seed: a whole number >= 0.
SEED = Number(int, low=0)


def _sections(config_cls):
    """``(section name, dataclass)`` of a config: the sections of one made of sections
    (``FitConfig``), or ``(None, config_cls)`` for a flat one (``InferenceConfig``)."""
    if any("cli" in f.metadata for f in dataclasses.fields(config_cls)):
        return [(None, config_cls)]
    return [(f.name, f.default_factory) for f in dataclasses.fields(config_cls)
            if f.default_factory is not dataclasses.MISSING
            and dataclasses.is_dataclass(f.default_factory)]


def config_fields(config_cls, only=None, command=None):
    """``{option dest: (section, field)}`` for every option field of ``config_cls`` (or of
    its sections; ``section`` is ``None`` for a flat config); ``only``: these dests alone;
    ``command``: the options that command offers."""
    found = {}
    for section, cls in _sections(config_cls):
        for fld in dataclasses.fields(cls):
            meta = fld.metadata.get("cli")
            if meta is None:
                continue
            if command is not None and meta["commands"] and command not in meta["commands"]:
                continue
            dest = (meta["name"] or fld.name).replace("-", "_")
            if only is None or dest in only:
                found[dest] = (section, fld)
    return found


def given_options(config_cls, options, command=None):
    """The options of ``config_cls`` that were given on the command line (not ``None``), as
    ``{field name: value}``, popped from ``options``."""
    return {fld.name: value for dest, (_, fld) in config_fields(config_cls, None, command).items()
            if (value := options.pop(dest, None)) is not None}


def _shown(value):
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ":".join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _click_option(dest, fld):
    meta = fld.metadata["cli"]
    name = dest.replace("_", "-")
    default = fld.default
    help_text = f"{meta['help']}  [{meta['default_text'] or _shown(default)}]"
    if isinstance(default, bool):
        off = meta["off"] or f"no-{name}"
        return click.option(f"--{name}/--{off}", dest, default=None, help=help_text)
    kind = meta["kind"] or type(default)
    if meta["choices"]:
        kind = click.Choice(list(meta["choices"]))
    elif kind == "count":
        kind = Number(int, low=0)
    elif kind == "list":  # comma-separated; the command parses it
        kind = str
    elif kind in (int, float):
        kind = Number(kind, *meta["range"])
    return click.option(f"--{name}", dest, type=kind, default=None, metavar=meta["metavar"],
                        help=help_text)


def config_options(config_cls, only=None, command=None):
    """Decorator adding a click option (default ``None``: "not given") for every option
    field of ``config_cls`` (or of its sections) that ``command`` offers, in declaration
    order."""
    fields = config_fields(config_cls, only, command)

    def decorate(command):
        for dest, (_, fld) in reversed(list(fields.items())):
            command = _click_option(dest, fld)(command)
        return command

    return decorate
