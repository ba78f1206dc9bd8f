"""Sample-based evaluation: a feature extractor, metrics on its features, and the runner."""
