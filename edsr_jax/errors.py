"""The one exception type for problems with what a user passed in."""


class UserError(ValueError):
    """A bad path, file, value or configuration. The CLI prints it as one line and exits with 2."""
