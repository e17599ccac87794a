"""TF Serving support for mlc_keras exports: configuration files, a launch
script and :mod:`serving.client` (REST and gRPC clients plus a CLI).

See serving/README.md."""
