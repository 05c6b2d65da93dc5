"""The one exception type for a user's mistake.

The CLI turns it into a single line on stderr and exit code 2; anything else is a bug and keeps its
traceback. The message names the problem and, after "fix:", what to do about it.
"""


class UserError(Exception):
    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} (fix: {fix})" if fix else problem)
