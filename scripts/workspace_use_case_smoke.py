"""Guest-backed smoke packs for the five use-case recipes.

    uv run python scripts/workspace_use_case_smoke.py --scenario all --environment debian:12

The logic lives in pyro_mcp.smoke (so the installed package carries it too).
"""

import sys

from pyro_mcp.smoke.runner import main

if __name__ == "__main__":
    sys.exit(main())
