"""`python -m jaxgen.report`: the command's entry point; its code is jaxgen/cli/report.py."""

from jaxgen.cli.common import main_guard
from jaxgen.cli.report import main

if __name__ == "__main__":
    main_guard(main)
