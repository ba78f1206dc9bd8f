"""The Fashion-MNIST VAE, GAN and UNet training steps of jaxgen, written in PyTorch: the yardstick
of `benchmarks/pytorch_parity.py`. Needs torch and numpy only (run it with a PyTorch
environment's python; jaxgen and JAX are not imported).

python -m benchmarks.torch_reference --model vae|gan|unet [--steps 20] [--channels-last]
    [--compile]

Each network has the parameter count of its jaxgen experiment (checked), the same batch,
loss and optimiser: `vae_fashion_mnist` (Bernoulli ELBO, Adam), `gan_fashion_mnist` (one D step
with the R1 penalty on a second forward pass of the real batch, as jaxgen computes it, then one
G step; Adam(2e-4, 0.5); EMA of G), `ddpm_fashion_mnist` (epsilon MSE at uniform t over a cosine
schedule, dropout 0.1, global-norm clipping 1, Adam; EMA). Layouts differ (PyTorch NCHW,
jaxgen NHWC) and so do 'SAME' paddings at stride 2 (the FLOPs do not). Prints one JSON line:
images/s over the timed steps after 3 warm-up steps, the parameter count, the threads.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PARAMETERS = {"vae": 1_788_449, "gan": 342_210, "unet": 280_177}  # jaxgen's, measured
BATCH = {"vae": 128, "gan": 64, "unet": 128}


def conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, padding=1 if k in (3, 4) else 0)


class Upsample(nn.Module):
    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode="nearest")


class VAE(nn.Module):
    """jaxgen.models.autoencoder.AutoEncoder, latent 16, features (32, 64), hidden 256."""

    def __init__(self, latent: int = 16):
        super().__init__()
        act = nn.SiLU
        self.encoder = nn.Sequential(conv(1, 32, stride=2), act(), conv(32, 32), act(),
                                     conv(32, 64, stride=2), act(), conv(64, 64), act(),
                                     nn.Flatten(), nn.Linear(7 * 7 * 64, 256), act())
        self.mean, self.log_variance = nn.Linear(256, latent), nn.Linear(256, latent)
        self.decoder_mlp = nn.Sequential(nn.Linear(latent, 256), act(),
                                         nn.Linear(256, 7 * 7 * 64), act())
        self.decoder = nn.Sequential(Upsample(), conv(64, 64), act(), conv(64, 64), act(),
                                     Upsample(), conv(64, 32), act(), conv(32, 32), act(),
                                     conv(32, 1))

    def loss(self, x):
        h = self.encoder(x)
        mean, log_variance = self.mean(h), self.log_variance(h)
        z = mean + torch.exp(0.5 * log_variance) * torch.randn_like(mean)
        logits = self.decoder(self.decoder_mlp(z).view(-1, 64, 7, 7))
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
        kl = 0.5 * (mean.square() + log_variance.exp() - 1 - log_variance).sum(1)
        return (nll + kl).mean()


def pixel_norm(x):
    return x * torch.rsqrt(x.square().mean(1, keepdim=True) + 1e-8)


class Generator(nn.Module):
    """jaxgen.models.dcgan.Generator, latent 64, features (64, 32)."""

    def __init__(self, latent: int = 64):
        super().__init__()
        self.dense = nn.Linear(latent, 7 * 7 * 64)
        self.convs = nn.ModuleList([conv(64, 64), conv(64, 64), conv(64, 32), conv(32, 32)])
        self.out = conv(32, 1)

    def forward(self, z):
        x = pixel_norm(F.leaky_relu(self.dense(z).view(-1, 64, 7, 7), 0.2))
        for i, layer in enumerate(self.convs):
            if i % 2 == 0:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = pixel_norm(F.leaky_relu(layer(x), 0.2))
        return torch.tanh(self.out(x))


class Discriminator(nn.Module):
    """jaxgen.models.dcgan.Discriminator, features (32, 64), 4x4 stride-2 convolutions."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(conv(1, 32, 4, 2), nn.LeakyReLU(0.2), conv(32, 64, 4, 2),
                                 nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(7 * 7 * 64, 1))

    def forward(self, x):
        return self.net(x)[:, 0]


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, groups: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, cin), conv(cin, cout)
        self.emb = nn.Linear(emb, cout)
        self.norm2, self.conv2 = nn.GroupNorm(groups, cout), conv(cout, cout)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, c: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c)
        self.query, self.key, self.value, self.out = (nn.Linear(c, c) for _ in range(4))

    def forward(self, x):
        b, c, h, w = x.shape
        y = self.norm(x).flatten(2).transpose(1, 2)
        q, k, v = self.query(y), self.key(y), self.value(y)
        weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1)
        return x + self.out(weights @ v).transpose(1, 2).reshape(b, c, h, w)


class UNet(nn.Module):
    """jaxgen.models.unet.UNet with ddpm_fashion_mnist's sizes: channels 16, mults (1, 2, 2),
    one res block per level, attention at 7x7, 8 groups, dropout 0.1."""

    def __init__(self, channels=16, mults=(1, 2, 2), blocks=1, attention=(7,), groups=8,
                 dropout=0.1, size=28):
        super().__init__()
        self.channels, emb = channels, 4 * channels
        self.time = nn.Sequential(nn.Linear(channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.conv_in = conv(1, channels)
        self.down, skips, c, res = nn.ModuleList(), [channels], channels, size
        for level, mult in enumerate(mults):
            for _ in range(blocks):
                self.down.append(self._block(c, channels * mult, emb, groups, dropout,
                                             res in attention))
                c = channels * mult
                skips.append(c)
            if level != len(mults) - 1:
                self.down.append(conv(c, c, stride=2))
                res = (res + 1) // 2
                skips.append(c)
        self.middle = nn.ModuleList([ResBlock(c, c, emb, groups, dropout), Attention(c, groups),
                                     ResBlock(c, c, emb, groups, dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for _ in range(blocks + 1):
                self.up.append(self._block(c + skips.pop(), channels * mult, emb, groups,
                                           dropout, res in attention))
                c = channels * mult
            if level != 0:
                self.up.append(nn.Sequential(Upsample(), conv(c, c)))
                res *= 2
        self.norm_out, self.conv_out = nn.GroupNorm(groups, c), conv(c, 1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @staticmethod
    def _block(cin, cout, emb, groups, dropout, attention):
        layers = [ResBlock(cin, cout, emb, groups, dropout)]
        if attention:
            layers.append(Attention(cout, groups))
        return nn.ModuleList(layers)

    def _run(self, block, h, emb):
        if isinstance(block, nn.ModuleList):
            for layer in block:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            return h
        return block(h)

    def forward(self, x, t):
        half = self.channels // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / max(half - 1, 1))
        angles = t.float()[:, None] * freqs[None]
        emb = self.time(torch.cat([angles.sin(), angles.cos()], 1))
        h = self.conv_in(x)
        skips = [h]
        for block in self.down:
            h = self._run(block, h, emb)
            skips.append(h)
        for layer in self.middle:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for block in self.up:
            if isinstance(block, nn.ModuleList):
                h = self._run(block, torch.cat([h, skips.pop()], 1), emb)
            else:
                h = block(h)[:, :, :skips[-1].shape[2], :skips[-1].shape[3]]
        return self.conv_out(F.silu(self.norm_out(h)))


def cosine_alpha_bar(steps: int = 1000, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17, betas clipped at 0.999."""
    f = np.cos((np.arange(steps + 1) / steps + s) / (1 + s) * np.pi / 2) ** 2
    betas = np.minimum(1 - f[1:] / f[:-1], 0.999)
    return torch.tensor(np.cumprod(1 - betas), dtype=torch.float32)


def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1 - decay)


def make_step(model_name: str, memory_format, compile_: bool):
    """-> (step(batch) -> loss, parameter count)."""
    if model_name == "vae":
        model = VAE().to(memory_format=memory_format)
        opt = torch.optim.Adam(model.parameters(), 1e-3)

        def step(x):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(x)
            loss.backward()
            opt.step()
            return loss
        loss_fn = torch.compile(model.loss) if compile_ else model.loss
        return step, sum(p.numel() for p in model.parameters())
    if model_name == "gan":
        g, d = Generator().to(memory_format=memory_format), Discriminator().to(
            memory_format=memory_format)
        g_ema = Generator().to(memory_format=memory_format)
        g_ema.load_state_dict(g.state_dict())
        g_opt = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
        d_opt = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))

        def d_loss_fn(real):
            with torch.no_grad():
                fake = g(torch.randn(real.shape[0], 64))
            logits = d(torch.cat([real, fake]))
            real_logits, fake_logits = logits.chunk(2)
            adversarial = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
            real = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(d(real).sum(), real, create_graph=True)
            return adversarial + 0.5 * 1.0 * grad.square().sum((1, 2, 3)).mean()

        def g_loss_fn(batch_size):
            return F.softplus(-d(g(torch.randn(batch_size, 64)))).mean()

        def step(real):
            d_opt.zero_grad(set_to_none=True)
            d_loss = d_loss_fn(real)
            d_loss.backward()
            d_opt.step()
            g_opt.zero_grad(set_to_none=True)
            d.requires_grad_(False)
            g_loss = g_loss_fn(real.shape[0])
            g_loss.backward()
            d.requires_grad_(True)
            g_opt.step()
            ema_update(g_ema, g, 0.999)
            return d_loss + g_loss
        return step, sum(p.numel() for p in [*g.parameters(), *d.parameters()])
    model = UNet().to(memory_format=memory_format)
    ema = UNet().to(memory_format=memory_format)
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), 5e-4)
    alpha_bar = cosine_alpha_bar()
    net = torch.compile(model) if compile_ else model

    def step(x0):
        opt.zero_grad(set_to_none=True)
        t = torch.randint(0, 1000, (x0.shape[0],))
        eps = torch.randn_like(x0)
        a = alpha_bar[t][:, None, None, None]
        loss = F.mse_loss(net(a.sqrt() * x0 + (1 - a).sqrt() * eps, t), eps)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema_update(ema, model, 0.999)
        return loss
    return step, sum(p.numel() for p in model.parameters())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(PARAMETERS), required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile (needs a C++ compiler)")
    args = p.parse_args()
    torch.manual_seed(0)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    step, parameters = make_step(args.model, memory_format, args.compile)
    if parameters != PARAMETERS[args.model]:
        raise SystemExit(f"{args.model}: {parameters} parameters, jaxgen's has "
                         f"{PARAMETERS[args.model]}")
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(1024, 1, 28, 28)).astype(np.float32)
    if args.model == "vae":
        images = (images > 0.5).astype(np.float32)  # binarised, as the Bernoulli VAE trains
    else:
        images = images * 2 - 1
    data = torch.from_numpy(images).to(memory_format=memory_format)
    batch = BATCH[args.model]
    batches = [data[(i * batch) % 1024:(i * batch) % 1024 + batch] for i in range(args.steps + 3)]
    start = time.perf_counter()
    for x in batches[:3]:
        step(x)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for x in batches[3:]:
        loss = step(x)
    float(loss.detach())
    seconds = (time.perf_counter() - start) / args.steps
    print(json.dumps({"model": args.model, "parameters": parameters, "batch": batch,
                      "channels_last": args.channels_last, "compile": args.compile,
                      "images_per_second": batch / seconds, "step_seconds": seconds,
                      "warmup_seconds": warmup, "threads": torch.get_num_threads(),
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
