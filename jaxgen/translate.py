"""`python -m jaxgen.translate`: the command's entry point; its code is jaxgen/cli/translate.py."""

from jaxgen.cli.common import main_guard
from jaxgen.cli.translate import main

if __name__ == "__main__":
    main_guard(main)
