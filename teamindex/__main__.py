"""python -m teamindex -> the command line."""

from .cli import main

raise SystemExit(main())
