"""The wire protocol: simple pages, files, uploads, yank; the hot path, page cache, rendering."""
