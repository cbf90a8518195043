"""``python -m tinymed.course ...`` runs ``tinymed course ...``."""

from tinymed.course.command import main

raise SystemExit(main())
