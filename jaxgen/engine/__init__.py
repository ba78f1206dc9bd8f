"""Runs put to use: a config and its data made into a family, a workdir's newest checkpoint
restored, the evaluation extractors, pretrained folders, and the Python API (`api`)."""
