"""Latent-space tools for any `contract.LatentModel` (`encode(params, x, labels)`,
`decode(params, z, labels)`): interpolation, attribute arithmetic, 2-D scatter, and the PCA
baseline; the interpolation and class-mean helpers also serve generators without an encoder
(a `contract.LatentGenerator`, a GAN).

Shapes: images [N, H, W, C] in the family's value range; latents [N, L].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def encode_mean(family, params, images, labels=None) -> jax.Array:
    """The posterior mean for a VAE, the code for an autoencoder: [N, L]."""
    code = family.encode(params, images, labels)
    return code[0] if isinstance(code, tuple) else code


def lerp(z_a: jax.Array, z_b: jax.Array, t: jax.Array) -> jax.Array:
    """z_a, z_b: [L]; t: [T] -> [T, L] on the straight line."""
    return (1.0 - t)[:, None] * z_a + t[:, None] * z_b


def slerp(z_a: jax.Array, z_b: jax.Array, t: jax.Array) -> jax.Array:
    """Spherical interpolation (Shoemake 1985; White 2016 for generative models): keeps the
    norm typical of a Gaussian prior, where the line's midpoint is atypically short."""
    cos = jnp.dot(z_a, z_b) / (jnp.linalg.norm(z_a) * jnp.linalg.norm(z_b))
    omega = jnp.arccos(jnp.clip(cos, -1.0, 1.0))
    sin = jnp.sin(omega)
    safe = sin > 1e-6
    w_a = jnp.where(safe, jnp.sin((1.0 - t) * omega) / jnp.where(safe, sin, 1.0), 1.0 - t)
    w_b = jnp.where(safe, jnp.sin(t * omega) / jnp.where(safe, sin, 1.0), t)
    return w_a[:, None] * z_a + w_b[:, None] * z_b


def interpolate(family, params, image_a, image_b, steps: int = 10, spherical: bool = False,
                label_a=None, label_b=None) -> jax.Array:
    """Decoded path between two images [H, W, C] -> [steps, H, W, C].

    A class-conditional model interpolates the code and keeps label_a throughout.
    """
    labels_ab = None if label_a is None else jnp.array([label_a, label_b])
    z = encode_mean(family, params, jnp.stack([image_a, image_b]), labels_ab)
    t = jnp.linspace(0.0, 1.0, steps)
    path = (slerp if spherical else lerp)(z[0], z[1], t)
    labels = None if label_a is None else jnp.full((steps,), label_a)
    return family.decode(params, path, labels)


def class_means(family, params, images, labels, num_classes: int) -> jax.Array:
    """Mean code of each class: [num_classes, L] (classes absent from labels get NaN)."""
    return mean_by_class(encode_mean(family, params, images), labels, num_classes)


def mean_by_class(z: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
    """z [N, L], labels int [N] -> [num_classes, L] (classes absent from labels get NaN)."""
    one_hot = jax.nn.one_hot(labels, num_classes)
    counts = one_hot.sum(0)
    return (one_hot.T @ z) / counts[:, None]


def attribute_strip(family, params, image, direction, alphas) -> jax.Array:
    """decode(encode(image) + alpha * direction) for each alpha: [len(alphas), H, W, C]."""
    z = encode_mean(family, params, image[None])[0]
    return family.decode(params, z[None] + jnp.asarray(alphas)[:, None] * direction[None])


def reconstruction_mse(family, params, images, labels=None) -> float:
    """Mean squared error per pixel of decode(encode_mean(x)) against x."""
    reconstruction = family.decode(params, encode_mean(family, params, images, labels), labels)
    return float(jnp.mean(jnp.square(reconstruction - images)))


def pca_reconstruction_mse(train_images: np.ndarray, test_images: np.ndarray, dim: int) -> float:
    """The linear baseline: project test images on the top-`dim` principal components of the
    training images and back; mean squared error per pixel."""
    from sklearn.decomposition import PCA
    flat_train = train_images.reshape(len(train_images), -1)
    flat_test = test_images.reshape(len(test_images), -1)
    pca = PCA(n_components=dim, random_state=0).fit(flat_train)
    reconstruction = pca.inverse_transform(pca.transform(flat_test))
    return float(np.mean(np.square(reconstruction - flat_test)))
