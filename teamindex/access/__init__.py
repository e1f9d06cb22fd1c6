"""teamindex.access: see the README's module map."""
