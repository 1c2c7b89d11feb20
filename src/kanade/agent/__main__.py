"""``python -m kanade.agent``: what an installed service runs (``kanade-agent`` itself)."""

import sys

from kanade.agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
