"""The distributions: parsed, stored, checked, backed up, removed; hosted docs."""
