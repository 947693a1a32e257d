"""The one exception type meant for users: the CLI prints it on one line and exits non-zero."""


class KeraslabError(Exception):
    """A problem the user can fix: `message` says what is wrong, `hint` how to fix it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return " ".join(text.split())
