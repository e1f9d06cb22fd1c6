"""End-to-end tests: the real clients against a live teamindex."""
