"""`python -m agent.demo.csms`: the entry point lives in `agent.demo.csms.cli`."""

from agent.demo.csms.cli import main

if __name__ == "__main__":
    main()
