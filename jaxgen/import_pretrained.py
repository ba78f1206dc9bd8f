"""`python -m jaxgen.import_pretrained`: the command's entry point; its code is
jaxgen/cli/import_pretrained.py."""

from jaxgen.cli.common import main_guard
from jaxgen.cli.import_pretrained import main

if __name__ == "__main__":
    main_guard(main)
