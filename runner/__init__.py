"""runner: each task of a plan in its own Docker sandbox, results merged on the host as git bundles."""

__version__ = "0.1.0"
