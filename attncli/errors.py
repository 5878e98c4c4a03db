"""Errors that reach the user as one line on stderr and an exit code (see docs/CLI.md).

Library code raises these; the CLI translates them once, at its boundary. Anything
else escaping the library is a bug and is reported as such.
"""


class AttncliError(Exception):
    """Base class: ``str(err)`` is the one line shown to the user."""

    exit_code = 1


class BadInputError(AttncliError):
    """The user asked for something that cannot be: a path that does not exist, a
    pickle checkpoint, an unknown option value, a device that is not there."""

    exit_code = 2


class ModelLoadError(AttncliError):
    """The model was found but cannot be loaded: bad config.json, an unsupported
    architecture or field, a corrupt safetensors file, weights that do not fit."""

    exit_code = 1


class CheckFailedError(AttncliError):
    """A verification the user asked for (such as ``inspect-mask --check``) failed."""

    exit_code = 1
