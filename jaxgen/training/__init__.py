"""The training loop: compiled steps over a mesh, periodic actions, Orbax checkpoints, the
workdir on disk, metric writers, stop signals. It receives a family through the contract and
imports no family, no evaluation and no picture beyond the loop's own."""
