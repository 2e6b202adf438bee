"""RELION and cryoSPARC STAR files: the images a job lists, and the same list pointing at
the denoised images.

Read with the ``starfile`` package (the ``star`` extra: ``pip install
"cryoem-denoise[star]"``), which pulls in pandas. A STAR file lists either micrographs
(``rlnMicrographName``: one file each) or particles (``rlnImageName``: ``N@stack.mrcs``, the
N-th section, from 1, of a stack). RELION >= 3.1 keeps the pixel size in an ``optics``
table (``rlnMicrographPixelSize``, else ``rlnImagePixelSize``), joined by
``rlnOpticsGroup``; older files have one table, with the pixel size in the row
(``rlnMicrographPixelSize``) or as ``rlnDetectorPixelSize`` (µm) x 10^4 /
``rlnMagnification``. Paths are relative to the project folder, the folder RELION runs in
(the current folder unless given), as RELION resolves them.

The output STAR file has the input's tables, every column kept, with the image column
pointing at the denoised files (relative to the project folder, as RELION writes them) and
the rows of images that could not be denoised left out.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from cryoem_denoise.errors import InputError, OutputError
from cryoem_denoise.io.atomic import atomic_output

__all__ = ["StarList", "read_star", "write_star", "merge_stars", "is_star_name", "IMAGE_COLUMNS"]

#: The columns that name images, in the order they are looked for.
IMAGE_COLUMNS = ("rlnMicrographName", "rlnImageName")


def is_star_name(name):
    """Whether a file name is a STAR file's (by suffix)."""
    return str(name).lower().endswith(".star")


def _starfile():
    try:
        import starfile  # lazy: optional dependency (the star extra), pulls in pandas
    except ImportError:
        raise InputError("reading STAR files needs the starfile package: "
                         "pip install 'cryoem-denoise[star]'") from None
    return starfile


@dataclass
class StarList:
    """The images a STAR file lists.

    Attributes
    ----------
    path : Path
        The STAR file.
    blocks : dict
        Its data blocks (name -> table), as read.
    table : str
        The block that lists the images.
    column : str
        The column that names them (``rlnMicrographName`` or ``rlnImageName``).
    files : dict
        Image file (resolved) -> pixel size in Å (``None`` where the file does not say).
    rows : list
        Per row of ``table``: ``(file, section)``, ``section`` from 0 for particles and
        ``None`` for micrographs; ``None`` for a row that names no usable image.
    problems : list
        ``InputError`` of each row that names no usable image (one line each).
    """

    path: Path
    blocks: dict
    table: str
    column: str
    project: Path
    files: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    problems: list = field(default_factory=list)


def _pixel_sizes(blocks, table):
    """Per row of ``table``, its pixel size in Å (or ``None``)."""
    rows = blocks[table]
    optics = blocks.get("optics")
    for name in ("rlnMicrographPixelSize", "rlnImagePixelSize"):
        if name in rows:
            return [float(v) for v in rows[name]]
    if optics is not None and "rlnOpticsGroup" in rows and "rlnOpticsGroup" in optics:
        for name in ("rlnMicrographPixelSize", "rlnImagePixelSize"):
            if name in optics:
                size = dict(zip(optics["rlnOpticsGroup"], optics[name]))
                return [_float_or_none(size.get(g)) for g in rows["rlnOpticsGroup"]]
    if "rlnDetectorPixelSize" in rows and "rlnMagnification" in rows:
        return [float(d) * 1e4 / float(m) if float(m) else None
                for d, m in zip(rows["rlnDetectorPixelSize"], rows["rlnMagnification"])]
    return [None] * len(rows)


def _float_or_none(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_star(path, project=None):
    """The images a STAR file lists (:class:`StarList`).

    Parameters
    ----------
    path : str or Path
    project : str or Path, optional
        The project folder relative paths start from (default: the current folder).

    Raises
    ------
    InputError
        Not a readable STAR file, or no table with an image column. A row naming a file
        that does not exist, or a particle reference that cannot be read, is not an error
        here: it is in :attr:`StarList.problems`, the other rows are kept.
    """
    path = Path(path)
    project = Path(project) if project is not None else Path.cwd()
    starfile = _starfile()
    try:
        blocks = starfile.read(path, always_dict=True)
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or exc})", path) from None
    except Exception as exc:  # starfile and pandas raise many types for a damaged file
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"not a readable STAR file ({text})", path) from None
    blocks = {name: table for name, table in blocks.items() if hasattr(table, "columns")}
    found = [(name, column) for column in IMAGE_COLUMNS for name, table in blocks.items()
             if column in table.columns]
    if not found:
        raise InputError(f"no table lists images (no {' or '.join(IMAGE_COLUMNS)} column)", path)
    table, column = found[0]
    listed = StarList(path, blocks, table, column, project)
    sizes = _pixel_sizes(blocks, table)
    for index, (entry, size) in enumerate(zip(blocks[table][column], sizes)):
        entry = str(entry).strip()
        section = None
        if column == "rlnImageName":
            number, at, name = entry.partition("@")
            try:
                section = int(number) - 1
            except ValueError:
                section = -1
            if not at or section < 0:
                listed.problems.append(InputError(
                    f"row {index + 1}: {column} {entry!r} is not N@stack", path))
                listed.rows.append(None)
                continue
            entry = name
        file = Path(entry) if Path(entry).is_absolute() else project / entry
        if not os.path.lexists(file):
            listed.problems.append(InputError(
                f"listed in {path.name} (row {index + 1}) but missing", file))
            listed.rows.append(None)
            continue
        listed.files.setdefault(file, size)
        listed.rows.append((file, section))
    return listed


def _relative(path, project):
    try:
        return os.path.relpath(path, project)
    except ValueError:  # another drive (Windows)
        return str(path)


def write_star(listed, outputs, path, overwrite=False):
    """Write ``listed``'s tables with the image column pointing at ``outputs``.

    Parameters
    ----------
    listed : StarList
    outputs : dict
        Input image file -> its denoised file; rows of files not in it are left out.
    path : str or Path
        The STAR file to write (atomically).

    Returns
    -------
    int
        The rows written.
    """
    blocks = dict(listed.blocks)
    rows = listed.rows
    keep = [i for i, row in enumerate(rows) if row is not None and row[0] in outputs]
    names = []
    for i in keep:
        file, section = rows[i]
        name = _relative(outputs[file], listed.project)
        names.append(name if section is None else f"{section + 1:06d}@{name}")
    table = blocks[listed.table].iloc[keep].copy()
    table[listed.column] = names
    blocks[listed.table] = table.reset_index(drop=True)
    starfile = _starfile()
    try:
        with atomic_output(path, overwrite=overwrite) as tmp:
            starfile.write(blocks, tmp)
    except OSError as exc:
        raise OutputError(f"cannot write ({exc.strerror or exc})", path) from None
    return len(keep)


def merge_stars(paths, path, overwrite=False):
    """Merge the STAR lists of a sharded run (``apply --shard``) into one.

    The image tables are concatenated in the order of ``paths``; the other tables (optics)
    are the union of the shards' rows. Every list must have the same tables and columns.

    Returns
    -------
    int
        The rows of the merged image table.

    Raises
    ------
    InputError
        A list that cannot be read, or lists of different structure.
    """
    starfile = _starfile()
    import pandas  # lazy: optional dependency (the star extra brings it with starfile)

    merged, image_table = None, None
    for source in paths:
        try:
            blocks = starfile.read(source, always_dict=True)
        except Exception as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"not a readable STAR file ({text})", source) from None
        if merged is None:
            merged = dict(blocks)
            found = [name for name, table in blocks.items() if hasattr(table, "columns")
                     and any(c in table.columns for c in IMAGE_COLUMNS)]
            if not found:
                raise InputError("no table lists images", source)
            image_table = found[0]
            continue
        if list(blocks) != list(merged) or any(
                list(getattr(blocks[n], "columns", [])) != list(getattr(merged[n], "columns", []))
                for n in merged):
            raise InputError(f"its tables or columns differ from {Path(paths[0]).name}'s: not "
                             "shards of one list", source)
        for name, table in blocks.items():
            if not hasattr(table, "columns"):
                continue
            both = pandas.concat([merged[name], table], ignore_index=True)
            merged[name] = both if name == image_table else both.drop_duplicates(
                ignore_index=True)
    if merged is None:
        raise InputError("no STAR lists to merge")
    try:
        with atomic_output(path, overwrite=overwrite) as tmp:
            starfile.write(merged, tmp)
    except OSError as exc:
        raise OutputError(f"cannot write ({exc.strerror or exc})", path) from None
    return len(merged[image_table])
