"""``python -m sipresponder`` runs the CLI."""

from .cli import main

raise SystemExit(main())
