"""The one exception type a user's bad input raises."""

__all__ = ["UserError"]


class UserError(ValueError):
    """A problem the user can fix; the CLI prints it on one line and exits 2.

    A ValueError, so that library callers may catch it as the bad value it reports.
    """
