"""`python -m jaxgen.sample`: the command's entry point; its code is jaxgen/cli/sample.py."""

from jaxgen.cli.common import main_guard
from jaxgen.cli.sample import main

if __name__ == "__main__":
    main_guard(main)
