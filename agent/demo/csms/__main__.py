"""`python -m agent.demo.csms`: the entry point lives in `agent.demo.csms_cli`."""

import sys

from agent.demo.csms_cli import main

if __name__ == "__main__":
    sys.exit(main())
