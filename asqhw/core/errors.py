"""The one exception type a user's bad input raises."""

__all__ = ["UserError"]


class UserError(Exception):
    """A problem the user can fix; the CLI prints it on one line and exits 2."""
