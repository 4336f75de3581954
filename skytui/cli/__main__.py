"""`python -m skytui.cli`: the same as the `skytui` command."""

from __future__ import annotations

import sys

from skytui.cli.main import main

sys.exit(main())
