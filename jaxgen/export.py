"""`python -m jaxgen.export`: the command's entry point; its code is jaxgen/cli/export.py."""

from jaxgen.cli.common import main_guard
from jaxgen.cli.export import main

if __name__ == "__main__":
    main_guard(main)
