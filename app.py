"""WSGI entry point for servers other than the built-in one: `app = create_app()`.

Settings come from TEAMINDEX_* environment variables (e.g. TEAMINDEX_DATA_DIR).
"""

from teamindex.app import create_app

app = create_app()
