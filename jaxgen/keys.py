"""`python -m jaxgen.keys`: the command's entry point; its code is jaxgen/cli/keys.py."""

from jaxgen.cli.common import main_guard
from jaxgen.cli.keys import main

if __name__ == "__main__":
    main_guard(main)
