"""Short runs of the graph and generative model-family examples: the GCN on the karate club
(examples/gcn_karate.py), the autoencoder and the VAE on the digits (examples/autoencoder.py,
examples/vae.py), the GAN on a ring of Gaussians (examples/gan.py) and the DDPM on two moons
(examples/diffusion.py).

Each trains briefly and checks that its figure moves the right way (accuracy far above
chance, reconstruction error and sample distance far below the untrained model's, modes
covered); each model, loss and compiled step is checked against a PyTorch twin on fresh
random inputs, and the random draws of `F.rand` / `F.randn` against their distributions.
The full runs and their figures are in the README.
"""
from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dlc
from dlc.cli import main as cli_main
from dlc.nn import functional as F

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

import autoencoder  # noqa: E402
import diffusion  # noqa: E402
import gan  # noqa: E402
import gcn_karate  # noqa: E402
import plots  # noqa: E402
import vae  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
AE_STEPS, GAN_STEPS, DIFFUSION_STEPS, DIFFUSION_SAMPLES = 200, 500, 300, 500


def tt(a) -> torch.Tensor:
    """A torch tensor of a numpy array (copied); a torch tensor as it is."""
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.array(a))


def assert_finite_close(got, want, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert np.isfinite(got).all() and np.isfinite(want).all()
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def torch_linear_stack(state: dict, prefix: str, count: int, act) -> callable:
    """x -> Linear, act, ..., Linear with the weights `prefix{i}.weight` of a state dict."""
    layers = [(tt(state[f"{prefix}{i}.weight"]), tt(state[f"{prefix}{i}.bias"]))
              for i in range(count)]

    def forward(x):
        for i, (w, b) in enumerate(layers):
            x = torch.nn.functional.linear(x, w, b)
            if i < count - 1:
                x = act(x)
        return x
    return forward


def eager(fn, *specs, module=None):
    return dlc.compile(fn, *specs, module=module, backend="eager")


# -- F.rand / F.randn: the seeded RNG the VAE and the DDPM draw from ---------------------------
def test_rand_and_randn_follow_their_laws_and_the_seed(rng):
    n = 200_000
    exe = eager(lambda x: (F.rand_like(x), F.randn(n), F.randn_like(x)),
                dlc.TensorSpec((n,), "float32"))
    seed = int(rng.integers(0, 2 ** 40))
    u, z1, z2 = exe(np.zeros(n, np.float32), np.int64(seed))
    assert u.dtype == z1.dtype == np.float32
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    for z in (z1, z2):
        assert np.isfinite(z).all()
        assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
        assert abs(np.mean(z ** 4) - 3.0) < 0.1  # Gaussian kurtosis
    assert abs(np.corrcoef(z1, z2)[0, 1]) < 0.01  # two calls, two independent streams
    again = exe(np.zeros(n, np.float32), np.int64(seed))
    other = exe(np.zeros(n, np.float32), np.int64(seed + 1))
    np.testing.assert_array_equal(again[1], z1)
    assert np.mean(other[1] == z1) < 0.001


def test_rand_rejects_a_bad_size():
    with pytest.raises(dlc.DlcError, match="randn.*non-negative"):
        dlc.trace(lambda x: x + F.randn(3, -1), dlc.TensorSpec((3, 1)))


# -- GCN on the karate club ----------------------------------------------------------------------
def torch_gcn(state: dict, adj: np.ndarray, features: torch.Tensor) -> torch.Tensor:
    """Kipf & Welling's propagation written out: D^-1/2 (A + I) D^-1/2 X W^T + b, twice."""
    a = tt(adj).double() + torch.eye(adj.shape[0], dtype=torch.float64)
    d = a.sum(1).rsqrt()
    prop = (d[:, None] * a * d[None, :]).float()
    h = prop @ (features @ tt(state["conv1.lin.weight"]).T) + tt(state["conv1.bias"])
    h = torch.relu(h)
    return prop @ (h @ tt(state["conv2.lin.weight"]).T) + tt(state["conv2.bias"])


def test_gcn_classifies_the_two_factions():
    r = gcn_karate.train(progress=False)
    assert r.accuracy >= 0.9 and r.unlabelled_accuracy >= 0.85
    assert np.isfinite(r.losses).all()
    assert np.mean(r.losses[-10:]) < 0.1 * np.mean(r.losses[:10])


def test_gcn_forward_and_masked_loss_match_torch(rng):
    adj, faction = gcn_karate.karate_club()
    assert adj.shape == (34, 34) and (adj == adj.T).all() and faction.sum() == 17
    model = gcn_karate.KarateGCN(adj)
    model.eval()
    features = rng.standard_normal((1, 34, 34)).astype(np.float32)
    got = eager(model, *model.example_inputs())(features)
    want = torch_gcn(model.state_dict(), adj, tt(features)).numpy()
    assert_finite_close(got, want)

    logits = rng.standard_normal((1, 34, 2)).astype(np.float32)
    target = gcn_karate.partial_labels(faction)[None]
    loss = eager(gcn_karate.masked_cross_entropy, dlc.TensorSpec(logits.shape),
                 dlc.TensorSpec(target.shape, "int64"))(logits, target)
    want = torch.nn.functional.cross_entropy(tt(logits).permute(0, 2, 1), tt(target),
                                             ignore_index=gcn_karate.IGNORE)
    assert_finite_close(loss, want.numpy())


# -- autoencoder and VAE -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ae_run():
    return autoencoder.train(steps=AE_STEPS, progress=False)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    png = tmp_path_factory.mktemp("vae") / "vae.png"
    return vae.train(steps=AE_STEPS, progress=False, png=str(png)), png


def test_autoencoder_reconstruction_error_falls(ae_run):
    r = ae_run
    assert r.test_mse < r.initial_test_mse / 3
    assert r.test_mse < 0.5 * r.mean_image_mse  # far better than the mean digit
    assert np.isfinite(r.losses).all()
    assert np.mean(r.losses[-20:]) < 0.7 * np.mean(r.losses[:20])


def test_vae_learns_and_writes_its_grid(vae_run):
    r, png = vae_run
    assert r.test_mse < r.initial_test_mse / 3 and r.test_mse < r.mean_image_mse
    assert np.mean(r.losses[-20:]) < 0.8 * np.mean(r.losses[:20])
    assert 0.0 < r.extra["kl"] < 50.0  # a code that carries information, not collapse
    samples = r.extra["samples"]
    assert samples.shape == (vae.SHOWN, 64) and np.isfinite(samples).all()
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_autoencoder_forward_and_loss_match_torch(rng):
    model = autoencoder.Autoencoder()
    images = rng.random((16, 64)).astype(np.float32)
    got = eager(model, dlc.TensorSpec(images.shape))(images)
    state = model.state_dict()
    enc = torch_linear_stack(state, "encoder.", 1, torch.relu)  # first layer only
    h = torch.relu(enc(tt(images)))
    code = torch.nn.functional.linear(h, tt(state["encoder.2.weight"]),
                                      tt(state["encoder.2.bias"]))
    dec = torch.nn.functional.linear(code, tt(state["decoder.0.weight"]),
                                     tt(state["decoder.0.bias"]))
    want = torch.nn.functional.linear(torch.relu(dec), tt(state["decoder.2.weight"]),
                                      tt(state["decoder.2.bias"]))
    assert_finite_close(got, want.numpy(), rtol=1e-4)

    loss = eager(autoencoder.reconstruction_loss, dlc.TensorSpec(images.shape),
                 dlc.TensorSpec(images.shape))(got, images)
    want = torch.nn.functional.binary_cross_entropy_with_logits(
        tt(got), tt(images), reduction="sum") / 16
    assert_finite_close(loss, want.numpy())


def torch_vae(state: dict, images: torch.Tensor, eps: torch.Tensor | None):
    lin = torch.nn.functional.linear
    h = torch.relu(lin(images, tt(state["encoder.0.weight"]), tt(state["encoder.0.bias"])))
    mu = lin(h, tt(state["mu.weight"]), tt(state["mu.bias"]))
    logvar = lin(h, tt(state["logvar.weight"]), tt(state["logvar.bias"]))
    z = mu if eps is None else mu + torch.exp(0.5 * logvar) * eps
    d = torch.relu(lin(z, tt(state["decoder.0.weight"]), tt(state["decoder.0.bias"])))
    return lin(d, tt(state["decoder.2.weight"]), tt(state["decoder.2.bias"])), mu, logvar


def test_vae_objective_matches_torch_with_the_same_noise(rng):
    """The training-mode loss graph (reparameterization with F.randn_like) against the
    negative ELBO in torch, fed the noise that dlc's RNG draws for the same seed."""
    model = vae.VAE()
    model.train()
    images = rng.random((16, 64)).astype(np.float32)
    seed = np.int64(rng.integers(0, 2 ** 31))
    spec = dlc.TensorSpec(images.shape, name="images")
    loss = eager(lambda x: vae.negative_elbo(model(x), x), spec, module=model)(images, seed)
    # the VAE's one random op has salt 0; so has the only one of this graph
    eps = eager(lambda m: F.randn_like(m), dlc.TensorSpec((16, vae.LATENT)))(
        np.zeros((16, vae.LATENT), np.float32), seed)
    logits, mu, logvar = torch_vae(model.state_dict(), tt(images), tt(eps))
    recon = torch.nn.functional.binary_cross_entropy_with_logits(logits, tt(images),
                                                                 reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu ** 2 - logvar.exp())
    assert_finite_close(loss, ((recon + kl) / 16).numpy(), rtol=1e-4)

    model.eval()  # eval mode reconstructs from the mean code, no noise, no seed input
    got = eager(model, spec)(images)
    assert_finite_close(got, torch_vae(model.state_dict(), tt(images), None)[0].numpy(),
                        rtol=1e-4)


# -- GAN -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    png = tmp_path_factory.mktemp("gan") / "gan.png"
    return gan.train(steps=GAN_STEPS, progress=False, png=str(png), snapshots=1), png


def test_gan_covers_several_modes(gan_run):
    r, png = gan_run
    assert r.initial_modes_covered == 0
    assert r.modes_covered > 1
    assert np.isfinite(r.d_losses).all() and np.isfinite(r.g_losses).all()
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_mode_coverage_counts_modes(rng):
    centers = gan.mode_centers()
    picks = rng.choice(len(centers), 3, replace=False)
    near = centers[np.repeat(picks, 300)] + 0.01 * rng.standard_normal((900, 2))
    far = rng.uniform(-0.5, 0.5, (100, 2))  # the centre of the ring: no mode
    covered, good = gan.coverage(np.concatenate([near, far]).astype(np.float32))
    assert covered == 3 and abs(good - 0.9) < 1e-9
    # a fourth mode holding fewer than 1% of the points is not covered
    other = next(i for i in range(len(centers)) if i not in picks)
    few = np.repeat(centers[other][None], 5, axis=0)
    assert gan.coverage(np.concatenate([near, far, few]).astype(np.float32))[0] == 3


def gradients(exe, state: dict[str, torch.Tensor]) -> None:
    """The gradients of a first training step, read back from Adam's first moment
    (exp_avg = (1 - beta1) g after one step), against torch's."""
    for name, tensor in state.items():
        got = exe.state[f"optim.exp_avg.{name}"] / (1.0 - gan.BETAS[0])
        assert_finite_close(got, tensor.grad.numpy(), rtol=1e-4, atol=1e-7)


def test_gan_steps_match_torch(rng):
    """One iteration of the two compiled steps against torch: the discriminator's step sees
    the generator's weights and updates only its own; the generator's step then sees the
    discriminator's updated weights and updates only the generator's."""
    steps = 100
    trainer = gan.GanTrainer(steps=steps, seed=int(rng.integers(0, 1000)))
    draws = copy.deepcopy(trainer.rng)  # the same real batch and noise as trainer.step
    real = gan.ring_of_gaussians(gan.BATCH, draws)
    z_d, z_g = gan.noise(gan.BATCH, draws), gan.noise(gan.BATCH, draws)
    g_state = {k: tt(v).requires_grad_() for k, v in trainer.g_exe.state_dict().items()}
    d_state = {k: tt(v).requires_grad_() for k, v in trainer.d_exe.state_dict().items()}
    leaky = lambda x: torch.nn.functional.leaky_relu(x, gan.SLOPE)  # noqa: E731
    G = torch_linear_stack(g_state, "generator.layers.", 3, leaky)
    D = torch_linear_stack(d_state, "discriminator.layers.", 3, leaky)
    lr = gan.LEARNING_RATE  # the schedule starts at it (a bound for the first step)

    d_loss, g_loss = trainer.step()

    bce = torch.nn.functional.binary_cross_entropy_with_logits
    want_d = bce(D(torch.cat([tt(real), G(tt(z_d)).detach()])), tt(trainer.d_labels))
    assert_finite_close(d_loss, want_d.detach().numpy(), rtol=1e-5)
    want_d.backward()
    gradients(trainer.d_exe, d_state)
    before = {k: v.detach() for k, v in d_state.items()}
    for k, v in trainer.d_exe.state_dict().items():  # Adam's first step moves by <= lr
        step = np.abs(v - before[k].numpy())
        assert step.max() <= lr * 1.0001 and step.mean() > 0.5 * lr

    # the generator's step saw the discriminator's weights after its update
    moved = {k: tt(v) for k, v in trainer.d_exe.state_dict().items()}
    D = torch_linear_stack(moved, "discriminator.layers.", 3, leaky)
    want_g = bce(D(G(tt(z_g))), tt(trainer.g_labels))
    assert_finite_close(g_loss, want_g.detach().numpy(), rtol=1e-5)
    want_g.backward()
    gradients(trainer.g_exe, g_state)

    graph = trainer.g_exe.graph  # the other network's weights: plain inputs, not params
    roles = {v.name: v.role for v in graph.inputs}
    assert all(roles[k] == "input" for k in trainer.d_exe.state_dict())
    assert all(roles[k] == "param" for k in trainer.g_exe.state_dict())


# -- DDPM ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def diffusion_run():
    return diffusion.train(steps=DIFFUSION_STEPS, progress=False, png=None,
                           samples=DIFFUSION_SAMPLES)


def test_diffusion_samples_approach_the_data(diffusion_run):
    r = diffusion_run
    rng = np.random.default_rng(0)
    real = diffusion.two_moons(DIFFUSION_SAMPLES, rng)
    gaussian = rng.standard_normal((DIFFUSION_SAMPLES, 2)).astype(np.float32)
    assert r.distance < r.initial_distance / 10
    assert r.distance < 0.5 * diffusion.energy_distance(gaussian, real)  # beats the prior
    assert np.isfinite(r.samples).all() and np.abs(r.samples).max() <= diffusion.DATA_LIMIT
    assert np.mean(r.losses[-30:]) < 0.8 * np.mean(r.losses[:30])


def torch_embedding(values: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    angles = values.double()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], 1).float()


def torch_denoiser(state: dict, x: torch.Tensor, t: torch.Tensor,
                   scale: float = diffusion.COORDINATE_SCALE) -> torch.Tensor:
    e = diffusion.EMBED
    features = torch.cat([torch_embedding(x[:, 0] * scale, e),
                          torch_embedding(x[:, 1] * scale, e), torch_embedding(t, e)], 1)
    h = features
    for i in (0, 2, 4):
        h = torch.nn.functional.silu(torch.nn.functional.linear(
            h, tt(state[f"net.{i}.weight"]), tt(state[f"net.{i}.bias"])))
    return torch.nn.functional.linear(h, tt(state["net.6.weight"]), tt(state["net.6.bias"]))


def test_denoiser_and_objective_match_torch(rng):
    model = diffusion.Denoiser()
    x = rng.standard_normal((64, 2)).astype(np.float32)
    t = rng.integers(0, diffusion.TIMESTEPS, 64).astype(np.float32)
    got = eager(model, *model.example_inputs(64))(x, t)
    want = torch_denoiser(model.state_dict(), tt(x), tt(t)).detach().numpy()
    assert_finite_close(got, want, rtol=1e-4, atol=1e-4)

    # eval mode: the objective's fixed draw, written out in torch
    schedule = diffusion.Schedule.cosine()
    objective = diffusion.DenoisingObjective(model, schedule)
    objective.eval()
    x0 = diffusion.two_moons(64, rng)
    got = eager(objective, dlc.TensorSpec(x0.shape))(x0)
    draw = np.random.default_rng(diffusion.EVAL_NOISE_SEED)
    steps = draw.integers(0, diffusion.TIMESTEPS, 64)
    eps = draw.standard_normal((64, 2)).astype(np.float32)
    abar = tt(schedule.alpha_bars[steps].astype(np.float32))[:, None]
    x_t = abar.sqrt() * tt(x0) + (1 - abar).sqrt() * tt(eps)
    want = torch_denoiser(model.state_dict(), x_t, tt(steps.astype(np.float32))) - tt(eps)
    assert_finite_close(got, want.detach().numpy(), rtol=1e-4, atol=1e-4)


def test_schedule_and_reverse_step(rng):
    s = diffusion.Schedule.cosine()
    assert s.betas.shape == (diffusion.TIMESTEPS,)
    assert (s.betas > 0).all() and (s.betas <= diffusion.MAX_BETA).all()
    assert (np.diff(s.alpha_bars) < 0).all()
    assert s.alpha_bars[0] > 0.999 and s.alpha_bars[-1] < 1e-4
    # with the true noise, the last reverse step gives back the clean point
    x0 = diffusion.two_moons(32, rng).astype(np.float64)
    eps = rng.standard_normal((32, 2))
    x1 = math.sqrt(s.alpha_bars[0]) * x0 + math.sqrt(1 - s.alpha_bars[0]) * eps
    assert_finite_close(s.reverse_step(x1, eps, 0, rng), x0, rtol=1e-9, atol=1e-9)


def test_energy_distance_matches_scipy(rng):
    from scipy.stats import energy_distance as scipy_energy
    x, y = rng.standard_normal(300), rng.standard_normal(200) * 1.5 + 0.3
    # scipy's 1-D statistic is the square root of the V-statistic computed here
    got = diffusion.energy_distance(x[:, None], y[:, None])
    assert_finite_close(got, scipy_energy(x, y) ** 2, rtol=1e-9)
    assert abs(diffusion.energy_distance(x[:, None], x[:, None])) < 1e-12


# -- `dlc train` and bad input ---------------------------------------------------------------------
@pytest.mark.parametrize("name,metric", [("gcn_karate", "accuracy"),
                                         ("autoencoder", "reconstruction MSE"),
                                         ("vae", "reconstruction MSE"),
                                         ("diffusion", "held-out noise MSE")])
def test_dlc_train_runs_the_example(name, metric, capsys):
    assert cli_main(["train", str(EXAMPLES / f"{name}.py"), "--steps", "20", "--quiet"]) == 0
    out = capsys.readouterr().out
    line = next(s for s in out.splitlines() if s.startswith("held-out"))
    assert metric in line and "20 steps" in line and "nan" not in line


def test_dlc_train_runs_the_gan_loop(capsys):
    assert cli_main(["train", str(EXAMPLES / "gan.py"), "--steps", "5", "--quiet"]) == 0
    out = capsys.readouterr().out
    line = next(s for s in out.splitlines() if s.startswith("GAN:"))
    assert "modes covered" in line and "nan" not in line


def test_dlc_train_gan_refuses_save(capsys):
    assert cli_main(["train", str(EXAMPLES / "gan.py"), "--steps", "5", "--save", "w"]) == 2
    assert "--save is not available" in capsys.readouterr().err


def test_missing_matplotlib_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    with pytest.raises(plots.MissingExtraError) as err:
        plots.point_panels([("x", np.zeros((3, 2)))], tmp_path / "x.png")
    message = str(err.value)
    assert "dlc[plot]" in message and "\n" not in message
    assert not (tmp_path / "x.png").exists()
    # a run that would end with a figure fails before it trains
    with pytest.raises(plots.MissingExtraError, match=r"dlc\[plot\]"):
        gan.train(steps=10 ** 9, progress=False, png=str(tmp_path / "gan.png"))
