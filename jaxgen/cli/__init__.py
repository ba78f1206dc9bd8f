"""The command-line tools: parse flags, print one-line errors, call the engine and the API;
nothing else. `python -m jaxgen.NAME` runs jaxgen/NAME.py, the entry point of cli/NAME.py."""
