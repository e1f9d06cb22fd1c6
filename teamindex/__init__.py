"""teamindex: a private Python package index for a small team."""

__version__ = "0.1.0"
