"""`python -m jaxgen.evaluate`: the command's entry point; its code is jaxgen/cli/evaluate.py."""

from jaxgen.cli.common import main_guard
from jaxgen.cli.evaluate import main

if __name__ == "__main__":
    main_guard(main)
