"""The ``cryoem-denoise`` command line.

Thin by design: each command parses options, calls library functions, and prints. Known
problems (:class:`~cryoem_denoise.errors.CryoEMDenoiseError`) become one line on stderr
and exit status 2; ``--debug`` shows the traceback instead. Commands live in
:mod:`.data` (info, fetch, simulate), :mod:`.train` (fit, experiments) and :mod:`.run`
(apply, evaluate); :mod:`.common` holds the group and the shared helpers.
"""

from cryoem_denoise.cli import data, run, train  # noqa: F401,E402  (register the commands)
from cryoem_denoise.cli.common import cli, error_line  # noqa: F401


def main(argv=None):
    """Console entry point."""
    cli.main(args=argv, prog_name="cryoem-denoise")
