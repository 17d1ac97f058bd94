"""``python -m temboardagent`` runs the agent."""

import sys

from .cli import main

sys.exit(main())
