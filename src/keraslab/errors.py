"""The one exception type meant for users: the CLI prints it on one line and exits non-zero."""


class KeraslabError(Exception):
    """A problem the user can fix: `message` says what is wrong, `hint` how to fix it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(" ".join(f"{message} ({hint})".split()) if hint else " ".join(message.split()))

    def one_line(self) -> str:
        return f"error: {self}"
