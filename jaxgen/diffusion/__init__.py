"""Discrete-time Gaussian diffusion as a library: schedules, the process (forward noising,
posterior, variational bound) and the samplers that run it backwards. No networks: the
denoiser enters as a function."""
