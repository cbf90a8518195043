"""``python -m tinymed.course ...`` runs ``tinymed course ...``."""

import sys

from tinymed.cli import main

raise SystemExit(main(["course", *sys.argv[1:]]))
