"""``python -m irpass`` runs the command line."""

from __future__ import annotations

import sys

from irpass.cli import main

sys.exit(main())
