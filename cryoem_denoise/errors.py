"""User-facing errors.

Library code raises these for problems a user can fix (a bad file, a bad option, a full
disk); the CLI turns them into one line on stderr and exit status :attr:`exit_code`.
Anything else is a bug and keeps its traceback.
"""


class CryoEMDenoiseError(Exception):
    """Base class of every error the user should see as one line.

    Parameters
    ----------
    message : str
        What is wrong, phrased for the user.
    path : str or os.PathLike, optional
        The file the problem is about; it is put in front of the message.
    """

    exit_code = 2

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
