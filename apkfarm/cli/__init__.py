"""The ``apkfarm`` command line: one module per sub-command."""
