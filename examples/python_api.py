"""jaxgen from Python: train a small VAE on the digits that ship with scikit-learn, sample,
evaluate, and walk the latent space. About a minute on 2 CPU cores.

python examples/python_api.py [WORKDIR]      (default runs/api_example)
"""

import sys

import numpy as np

import jaxgen


def main(workdir: str) -> None:
    config = jaxgen.load_config("experiments/vae_digits.py", {"train.num_steps": 1000})
    model = jaxgen.train(config, workdir)  # run again: resumes, nothing left to train
    images = model.sample(16)  # [16, 8, 8, 1] in [0, 1]
    print("samples:", images.shape, f"mean pixel {images.mean():.3f}")

    record = model.evaluate(num_samples=0)  # the likelihood metrics only (no classifier)
    values = record["values"]
    print(f"test -ELBO {values['neg_elbo']:.2f} nats, "
          f"{values['neg_elbo_bits_per_dim']:.3f} bits/dim")

    test = model.splits["test"]
    first, second = test.images[:2].astype(np.float32) / test.max_value
    codes = model.encode(np.stack([first, second]))
    path = np.linspace(0.0, 1.0, 8)[:, None] * (codes[1] - codes[0]) + codes[0]
    print("interpolation:", model.decode(path).shape)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/api_example")
