"""``python -m tools.trial``: the field trial (tools.trial.trial_cli)."""

import sys

from tools.trial.trial_cli import main

sys.exit(main())
