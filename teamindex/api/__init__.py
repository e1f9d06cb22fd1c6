"""teamindex.api: see the README's module map."""
