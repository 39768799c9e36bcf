"""tl-fraud: transaction fraud detection that transfers between tables (no torch at import)."""

__version__ = "0.1.0"
