"""The one exception type that reaches a user as a single line instead of a traceback."""


class UserError(Exception):
    """Bad input (a file, a folder or a setting); the message names it."""
