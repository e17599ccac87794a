"""Every data set behind one interface, registered by name, so that ``--dataset`` reaches each one.

A source module defines ``SOURCE = Source(name, prepare, ...)``
where ``prepare(config, cache_dir)`` readies the data and returns the path
of its manifest CSV (a streamed source, ``tfrecord``, returns its
tfrecords.json). Importers of a published layout (RaFD, KDEF, ...) also
give ``scan(data_dir, **options) -> scanning.ScanResult`` and are prepared by
importing ``--data_dir`` with their default options into ``cache_dir/<name>``.

Library use::

    from mlc_keras.data.sources import import_dataset
    manifest = import_dataset("rafd", "/data/RaFD", "/data/rafd_manifest",
                              angles=("090",), gazes=("frontal",))

``import_dataset`` writes ``OUT_DIR/manifest.csv`` and ``OUT_DIR/import.json``
(importer, options, summary), prints the summary and returns the manifest
path; ``scan_dataset`` returns the ``ScanResult`` without writing.

May import mlc_keras.data, errors, expressions and images only: no models, no training.
"""

import dataclasses
import typing

from mlc_keras.data.manifest import cache_dir_for, read_import_summary
from mlc_keras.errors import UserError


class UnknownDatasetError(UserError, ValueError):
    """No data set is registered under that name."""


@dataclasses.dataclass(frozen=True)
class Source:
    """One data set: how to turn it into a manifest.

    name: the ``--dataset`` value (config.DATASETS lists them all).
    prepare: ``(config, cache_dir) -> manifest path``.
    scan: importers of a published layout only, ``(data_dir, **options) -> ScanResult``.
    attribution: credit to show wherever its images are shown, or None.
    streaming: ``prepare`` returns the manifest of a set that training streams
    (``data/tfrecord.py``) instead of a manifest CSV to decode into memory.
    """

    name: str
    prepare: typing.Callable
    scan: typing.Callable = None
    attribution: str = None
    streaming: bool = False


_REGISTRY = {}


def register(source):
    """Adds ``source`` under ``source.name``; returns it."""
    if source.name in _REGISTRY:
        raise ValueError(f"data set {source.name!r} is registered twice")
    _REGISTRY[source.name] = source
    return source


def _key(name):
    return str(name).strip().lower().replace("+", "plus").replace("-", "")


def get(name):
    """The ``Source`` registered as ``name`` ("CK+" finds "ckplus")."""
    source = _REGISTRY.get(_key(name))
    if source is None:
        raise UnknownDatasetError(f"unknown data set {name!r}; known: {', '.join(_REGISTRY)}")
    return source


def names():
    """Registered names, in registration order."""
    return tuple(_REGISTRY)


def manifest_for(config):
    """Prepares the data set that ``--dataset`` names; returns its manifest path."""
    return get(config.dataset).prepare(config, cache_dir_for(config))


def scan_dataset(name, data_dir, **options):
    """Runs importer ``name`` without writing; returns its ``ScanResult``."""
    source = get(name)
    if source.scan is None:
        raise UnknownDatasetError(
            f"data set {name!r} is not an importer of a published layout; known: {', '.join(IMPORTERS)}")
    return source.scan(data_dir, **options)


def import_dataset(name, data_dir, out_dir, progress=True, **options):
    """Scans data set ``name`` and writes ``out_dir/manifest.csv``.

    Also writes ``out_dir/import.json`` ({"importer", "options",
    "summary"}) and, with ``progress``, prints the summary (images,
    subjects, per-expression counts, skipped counts by reason, warnings).

    Returns:
      str, the manifest path.

    Raises:
      ManifestError: the layout does not match, or nothing usable was found.
      UnknownExpressionError: an expression code unknown to that data set.
    """
    return scanning.write_import(scan_dataset(name, data_dir, **options), out_dir, options, progress)


# The modules register after the interface above exists (they import Source from here).
from mlc_keras.data.sources import (  # noqa: E402
    cfee, ckplus, folders, jaffe, kdef, london, manifest, mmi, rafd, scanning, synthetic, tfrecord,
    yale)

for _module in (synthetic, london, manifest, rafd, kdef, jaffe, ckplus, cfee, mmi, yale, folders,
                tfrecord):
    register(_module.SOURCE)
del _module

# name -> scan(data_dir, **options) for the importers of published layouts.
IMPORTERS = {name: source.scan for name, source in _REGISTRY.items() if source.scan is not None}

__all__ = ["IMPORTERS", "Source", "UnknownDatasetError", "get", "import_dataset", "manifest_for",
           "names", "read_import_summary", "register", "scan_dataset"]
