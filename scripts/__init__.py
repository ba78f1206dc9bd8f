"""Set-up and fixture scripts, run from the repository root (`bash scripts/setup.sh`,
`python -m scripts.make_diffusers_fixtures`); tests and benchmarks import the fixture makers
as `scripts.NAME`."""
