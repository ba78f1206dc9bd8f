"""Pictures: sample grids, strips and curves (viz), what the training loop draws (training),
a style-based generator's pictures (style), latent-space walks (latent)."""
