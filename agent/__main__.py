"""`python -m agent` is `station-agent`."""

import sys

from agent.cli import main

sys.exit(main())
