"""The ``cryoem-denoise`` command line.

Thin by design: each command parses options, calls library functions, and prints. Known
problems (:class:`~cryoem_denoise.errors.CryoEMDenoiseError`) become one line on stderr
and exit status 2; ``--debug`` shows the traceback instead. Commands live in
:mod:`.data` (info, fetch, simulate), :mod:`.train` (fit, experiments), :mod:`.run`
(apply, evaluate) and :mod:`.relion` (relion-external: RELION's External job);
:mod:`.common` holds the group and the shared helpers, :mod:`.options` the options
generated from the config.
"""

import sys

from cryoem_denoise.cli import data, relion, run, train  # noqa: F401,E402  (register the commands)
from cryoem_denoise.cli.common import cli, error_line  # noqa: F401


def main(argv=None):
    """Console entry point."""
    cli.main(args=argv, prog_name="cryoem-denoise")


def relion_main(argv=None):
    """Console entry point ``cryoem-denoise-relion``: RELION's External job runs it as
    ``cryoem-denoise-relion --o JOBDIR --in_mics FILE.star ...``
    (:mod:`cryoem_denoise.cli.relion`)."""
    args = sys.argv[1:] if argv is None else list(argv)
    cli.main(args=["relion-external", *args], prog_name="cryoem-denoise")
