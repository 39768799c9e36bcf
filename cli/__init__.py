"""tl.cli — the `tl` click group."""

from .main import cli, main

__all__ = ["cli", "main"]
