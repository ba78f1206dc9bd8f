"""jaxgen COMMAND [ARGS...]: the console command, the same as python -m jaxgen.COMMAND ARGS...

Commands: train, sample, evaluate, translate, sweep, report, keys, import_pretrained, export
(each takes --help). `pip install -e .`
(scripts/setup.sh) puts `jaxgen` on the venv's PATH.
"""

from __future__ import annotations

import importlib
import sys

from jaxgen.cli import common as cli

COMMANDS = ("train", "sample", "evaluate", "translate", "sweep", "report", "keys",
            "import_pretrained", "export")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0 if len(sys.argv) >= 2 else 2)
    command = sys.argv[1]
    if command not in COMMANDS:
        print(f"error: unknown command '{command}' (known: {', '.join(COMMANDS)})",
              file=sys.stderr)
        sys.exit(2)
    cli.main_guard(importlib.import_module(f"jaxgen.{command}").main, sys.argv[2:])


if __name__ == "__main__":
    main()
