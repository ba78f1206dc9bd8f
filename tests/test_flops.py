"""The FLOP counter against hand counts, and the device peaks MFU divides by."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from jaxgen.core import flops


def test_a_batched_matmul_is_two_flops_per_multiply_add():
    a, b = jnp.zeros((3, 5, 7)), jnp.zeros((3, 7, 11))
    counted = flops.count(lambda a, b: jnp.einsum("bij,bjk->bik", a, b), a, b)
    assert counted["dot"] == 2 * 3 * 5 * 7 * 11 and counted["conv"] == 0


class SmallConvNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(8, (3, 3))(x)                                      # 12x12, 3 -> 8
        x = nn.Conv(16, (3, 3), strides=2, feature_group_count=2)(x)   # 6x6, 2 groups of 4 -> 8
        return nn.Dense(10)(x.reshape(x.shape[0], -1))                 # 576 -> 10


def test_a_small_conv_net_forward_and_backward_match_hand_counts():
    x = jnp.zeros((4, 12, 12, 3))
    net = SmallConvNet()
    params = net.init(jax.random.key(0), x)
    conv1 = 2 * (4 * 12 * 12 * 8) * (3 * 3 * 3)
    conv2 = 2 * (4 * 6 * 6 * 16) * (3 * 3 * 4)
    dense = 2 * 4 * 576 * 10
    forward = flops.count(net.apply, params, x)
    assert forward["conv"] == conv1 + conv2 and forward["dot"] == dense
    # The parameter gradient: each layer's weight gradient costs its forward; every layer
    # but the first also passes the gradient to its input at the same cost (the strided
    # layer's input gradient runs on a 2x-dilated input and is counted on its real taps).
    backward = flops.count(jax.grad(lambda p: jnp.sum(net.apply(p, x))), params)
    assert backward["conv"] == 2 * conv1 + 3 * conv2
    assert backward["dot"] == 3 * dense


def test_scans_multiply_their_body_and_conds_take_the_costliest_branch():
    x = jnp.zeros((4, 4))

    def scanned(x):
        return jax.lax.scan(lambda c, _: (c @ c, None), x, None, length=5)[0]

    assert flops.count(scanned, x)["dot"] == 5 * 2 * 4 * 4 * 4
    branchy = flops.count(lambda p, x: jax.lax.cond(p, lambda y: y @ y @ y, lambda y: y, x),
                          True, x)
    assert branchy["dot"] == 2 * (2 * 4 * 4 * 4)


@pytest.mark.parametrize("kind, chip", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA H200", "H200"), ("NVIDIA A100-SXM4-80GB", "A100"), ("TPU v4", "TPU v4"),
    ("TPU v5 lite", "TPU v5e"), ("TPU v5p", "TPU v5p"), ("TPU v6 lite", "TPU v6e"),
    ("cpu", None),
])
def test_device_kinds_map_to_their_peaks(kind, chip):
    assert flops.chip_name(kind) == chip
    device = type("Device", (), {"device_kind": kind})()
    peak = flops.peak_flops(device, jnp.bfloat16)
    assert (peak is None) == (chip is None)
    if chip:
        assert peak == flops.PEAKS[chip]["bfloat16"] >= 1e14
