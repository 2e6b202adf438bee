"""User-facing errors.

Library code raises these for problems a user can fix (a bad file, a bad option, a full
disk); the CLI turns them into one line on stderr and exit status :attr:`exit_code`.
Anything else is a bug and keeps its traceback.
"""


#: Exit status of a command that stopped on an error (one line on stderr), before or instead
#: of its work: a bad option, an unreadable model, an input that is the only one.
EXIT_ERROR = 2
#: Exit status of a command that went on past inputs it could not use (one line each) and
#: processed the others: some files failed, the rest are done.
EXIT_SOME_FAILED = 3
#: Exit statuses of an interrupted command (Ctrl-C; SIGTERM, e.g. a cluster's time limit).
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class CryoEMDenoiseError(Exception):
    """Base class of every error the user should see as one line.

    Parameters
    ----------
    message : str
        What is wrong, phrased for the user.
    path : str or os.PathLike, optional
        The file the problem is about; it is put in front of the message.
    """

    exit_code = EXIT_ERROR

    def __init__(self, message, path=None):
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)

    def with_path(self, path):
        """Return the same error naming ``path`` (keeps a path already set)."""
        if self.path is not None:
            return self
        return type(self)(self.message, path)

    def __str__(self):
        return f"{self.path}: {self.message}" if self.path else self.message


class InputError(CryoEMDenoiseError):
    """An input file or array cannot be used (not MRC, truncated, non-finite, ...)."""


class OutputError(CryoEMDenoiseError):
    """An output cannot be written (exists, is an input, no space, not writable)."""


class ConfigError(CryoEMDenoiseError):
    """An option or configuration value is invalid."""


class DataFetchError(CryoEMDenoiseError):
    """Sample data could not be obtained or failed its checksum."""


class InputWarning(UserWarning):
    """An input is read, but not as it says it should be (a tolerated header fault).

    Library code issues it with :func:`warnings.warn`; the CLI prints it as one line.
    """
