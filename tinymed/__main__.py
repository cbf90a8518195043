"""``python -m tinymed ...`` runs the ``tinymed`` command."""

from tinymed.cli import main

raise SystemExit(main())
