"""Command-line options generated from config fields declared with
:func:`cryoem_denoise.config.option`: one declaration per option (name, type, choices, help,
default) in the config, turned into click options here."""

import dataclasses

import click

__all__ = ["config_fields", "config_options"]


def _sections(config_cls):
    """``(section name, dataclass)`` of a config made of sections (``FitConfig``)."""
    return [(f.name, f.default_factory) for f in dataclasses.fields(config_cls)
            if f.default_factory is not dataclasses.MISSING
            and dataclasses.is_dataclass(f.default_factory)]


def config_fields(config_cls, only=None):
    """``{option dest: (section, field)}`` for every option field of ``config_cls``'s
    sections (``only``: these dests alone)."""
    found = {}
    for section, cls in _sections(config_cls):
        for fld in dataclasses.fields(cls):
            meta = fld.metadata.get("cli")
            if meta is None:
                continue
            dest = (meta["name"] or fld.name).replace("-", "_")
            if only is None or dest in only:
                found[dest] = (section, fld)
    return found


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
        kind = click.IntRange(min=0)
    return click.option(f"--{name}", dest, type=kind, default=None, metavar=meta["metavar"],
                        help=help_text)


def config_options(config_cls, only=None):
    """Decorator adding a click option (default ``None``: "not given") for every option
    field of ``config_cls``'s sections, in declaration order."""
    fields = config_fields(config_cls, only)

    def decorate(command):
        for dest, (_, fld) in reversed(list(fields.items())):
            command = _click_option(dest, fld)(command)
        return command

    return decorate
