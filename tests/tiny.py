"""The one tiny setting every test uses: configs/tiny.flags, read as
keyword overrides for ``config.make_config`` (so the preset and the tests
cannot drift apart)."""

import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO_ROOT, "configs")
TINY_FLAGFILE = os.path.join(CONFIGS, "tiny.flags")


def read_flagfile(path):
    """{name: value string or bool} of one flagfile's own lines (its
    ``--flagfile=`` includes are not followed)."""
    values = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line.startswith("--") or line.startswith("--flagfile="):
                continue
            name, sep, value = line[2:].partition("=")
            if sep:
                values[name] = value
            elif name.startswith("no"):
                values[name[2:]] = False
            else:
                values[name] = True
    return values


# The tiny preset's own settings (on top of configs/base.flags).
TINY = read_flagfile(TINY_FLAGFILE)

# The network-shape part of it, for tests that build models without a run.
MODEL_FIELDS = ("resolution", "critic_levels", "g_channels", "g_res_blocks", "d_channels",
                "feature_channels", "batch_size")
TINY_MODEL = {k: TINY[k] for k in MODEL_FIELDS}


def tiny_overrides(tmp_path, **kw):
    """make_config(**tiny_overrides(tmp_path)) is configs/tiny.flags with its
    run folder and data cache under ``tmp_path`` and a quiet console."""
    base = dict(TINY, verbose=0, workdir=str(tmp_path / "run"), data_cache=str(tmp_path / "data"))
    base.update(kw)
    return base
