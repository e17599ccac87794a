"""User errors end a command with one clear line, not a traceback."""

import contextlib
import sys


def user_error_types():
    """The exceptions that mean 'your input is wrong', not 'a bug'."""
    from mlc_keras.config import ConfigError
    from mlc_keras.data.manifest import ManifestError
    from mlc_keras.expressions import UnknownExpressionError

    types = [ConfigError, ManifestError, UnknownExpressionError]
    try:
        from mlc_keras.runtime import StrategyError

        types.append(StrategyError)
    except ImportError:
        pass
    for module, name in (("mlc_keras.training", "TrainingDiverged"),
                         ("mlc_keras.training", "WorkdirError"),
                         ("mlc_keras.data.align", "ImageError"),
                         ("mlc_keras.export", "ExportError")):
        try:
            types.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(types)


@contextlib.contextmanager
def exit_on_user_error():
    try:
        yield
    except Exception as e:  # noqa: BLE001 - filtered just below
        if isinstance(e, user_error_types()):
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
        raise
