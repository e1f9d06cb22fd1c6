"""teamindex.ops: see the README's module map."""
