"""teamindex.index: see the README's module map."""
