"""`python -m llm_sandbox …` is the `llm-sandbox` command."""

import sys

from llm_sandbox.cli import main

sys.exit(main())
