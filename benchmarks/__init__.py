"""Benchmarks: each module is run from the repository root as `python -m benchmarks.NAME`
(the installed jaxgen, this folder a package beside it: no module edits sys.path), and
writes a JSON record naming device, versions and command under benchmarks/results/."""
