"""The one exception type for a user's mistake.

The CLI turns it into a single line on stderr and exit code 2; anything else is a bug and keeps its
traceback. The message names the problem and, after "fix:", what to do about it.
"""


class UserError(Exception):
    def __init__(self, problem: str, fix: str | None = None):
        self.problem = one_line(problem)
        self.fix = one_line(fix) if fix else fix
        super().__init__(f"{self.problem} (fix: {self.fix})" if fix else self.problem)


def one_line(text: str) -> str:
    """Control characters from a user's input (a newline in a file name) escaped, so the message stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
