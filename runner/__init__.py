"""runner: each task of a plan in its own Docker sandbox; work merged home as git bundles."""

__version__ = "0.1.0"
