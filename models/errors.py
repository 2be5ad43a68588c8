"""The one base class of the errors a user can fix (bad data, a flag, a file, a folder, memory): the
command-line tools print its message as one line (aste/cli.py). A leaf module, so that both the
model code and the aste package can raise its subclasses."""


class UserError(RuntimeError):
    """A failure whose message says what went wrong and what to do; no traceback needed."""
