"""`python -m jaxgen.sweep`: the command's entry point; its code is jaxgen/cli/sweep.py."""

from jaxgen.cli.common import main_guard
from jaxgen.cli.sweep import main

if __name__ == "__main__":
    main_guard(main)
