"""Datasets (sources.py) and deterministic batching (pipeline.py)."""
