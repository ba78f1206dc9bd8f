"""python -m jaxgen.keys [FAMILY ...] [--check docs/keys.md | --write docs/keys.md]

The config keys each family declares (its `KEYS`: default, meaning, allowed values) as
Markdown tables: the same declaration that sets the defaults and validates a config. With
--write, replaces the generated key list of docs/keys.md; with --check, exits 1 if it is stale.
"""

from __future__ import annotations

import argparse
import sys

from jaxgen.core import config as config_lib
from jaxgen.families import FAMILIES, family_keys

BEGIN, END = ("<!-- config keys: python -m jaxgen.keys --write docs/keys.md -->",
              "<!-- end keys -->")


def tables(names: list[str]) -> str:
    parts = []
    for name in names:
        title = "Every experiment" if name == "base" else f"`family = \"{name}\"`"
        parts.append(f"### {title}\n\n{config_lib.keys_table(family_keys(name))}")
    return "\n\n".join(parts)


def with_tables(readme: str, names: list[str]) -> str:
    if BEGIN not in readme or END not in readme:
        raise config_lib.ConfigError(f"no '{BEGIN}' ... '{END}' section to fill")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n\n{tables(names)}\n\n{END}{tail}"


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("families", nargs="*",
                   help=f"base and/or families; default: all ({', '.join(FAMILIES)})")
    p.add_argument("--write", help="a Markdown file whose key section to rewrite")
    p.add_argument("--check", help="a Markdown file whose key section must be up to date")
    flags = p.parse_args(argv)
    names = flags.families or ["base", *FAMILIES]
    target = flags.write or flags.check
    if not target:
        print(tables(names))
        return
    with open(target, encoding="utf-8") as f:
        text = f.read()
    updated = with_tables(text, names)
    if flags.check:
        if updated != text:
            print(f"{target}: the config key list is stale; run python -m jaxgen.keys "
                  f"--write {target}", file=sys.stderr)
            sys.exit(1)
        return
    with open(target, "w", encoding="utf-8") as f:
        f.write(updated)

