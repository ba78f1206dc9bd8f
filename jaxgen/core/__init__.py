"""The core every layer builds on: the family contract (protocols), the train state, keys by
purpose, the device mesh and shardings, mixed precision, process settings, FLOP counting and
the config (declared keys, loading, validation)."""
