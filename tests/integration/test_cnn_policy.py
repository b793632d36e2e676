"""CNN policies end to end (issue 21 item 2): chosen automatically for image observations, frames
kept uint8 in the batch, normalisation left to the network (said once), bit-exact resume, learning
on a toy image task over seeds 0-2, and MinAtar / ALE Atari by id when their packages are here."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from _image_envs import ENV_ID
from _learning import median, summary, train_seeds
from _runs import untimed

from trustpg import TRPO, Agent
from trustpg.accel import fallback
from trustpg.app.cli import main
from trustpg.core.linalg import flat_params
from trustpg.nets.cnn import CNNActor, CNNCritic

SMALL = dict(num_envs=2, steps_per_env=64, progress=False, tensorboard=False, eval_episodes=0)


def test_images_get_a_cnn_and_stay_uint8_in_the_batch(caplog):
    fallback.reset()
    with caplog.at_level(logging.INFO, logger="trustpg"):
        agent = TRPO(ENV_ID, seed=0, **SMALL)
        assert isinstance(agent.policy, CNNActor) and isinstance(agent.critic, CNNCritic)
        t = agent.trainer
        batch = t._ensure_collector().collect(t.actor, t.critic, 16)
    assert batch.obs.dtype == torch.uint8 and batch.obs.shape == (16, 2, 144)  # flat rows, as any Box
    assert "observation normalisation off: the observations are images" in caplog.text
    assert "sampler off: CNNActor" in caplog.text
    with pytest.raises(ValueError, match="curvature='kfac' is invalid"):
        TRPO(ENV_ID, curvature="kfac", **SMALL)
    mlp = TRPO(ENV_ID, policy="mlp", **SMALL)  # asked for: honoured, frames flattened and normalised
    assert type(mlp.policy).__name__ == "Actor"
    mlp.learn(256)
    t = mlp.trainer
    assert t._ensure_collector().collect(t.actor, t.critic, 4).obs.dtype == torch.float32
    mlp.close()
    agent.close()


def test_normalize_images_feeds_the_cnn_frames_normalised_per_cell():
    """normalize_images=true: float32 frames standardised with the running statistics of each
    pixel (as an MLP's observations), the trunk unscaled; acting sees the same frames."""
    agent = TRPO(ENV_ID, seed=0, normalize_images=True, **SMALL)
    assert agent.policy.trunk.scale == 1.0 and agent.critic.trunk.scale == 1.0
    agent.learn(512)  # statistics from four batches
    t = agent.trainer
    col = t._ensure_collector()
    raw = np.stack([e.unwrapped._frame() for e in col.env.unwrapped.envs]).astype(np.float64)
    std = np.sqrt(t.obs_rms.var + 1e-8)  # per pixel, [12, 12, 1]
    assert std.min() > 10  # every column has been lit: a pixel is 0 or 255, its std far from 1
    want = np.clip((raw - t.obs_rms.mean) / std, -10, 10).reshape(2, -1)
    with torch.no_grad():  # acting on raw frames normalises them the same way
        direct = t.actor(torch.as_tensor(want, dtype=torch.float32)).probs
    torch.testing.assert_close(t.distribution(raw).probs, direct)
    batch = col.collect(t.actor, t.critic, 1)  # (then updates the statistics)
    assert batch.obs.dtype == torch.float32 and batch.obs.shape == (1, 2, 144)
    np.testing.assert_allclose(batch.obs[0].numpy(), want, rtol=1e-5, atol=1e-5)
    assert TRPO(ENV_ID, **SMALL).policy.trunk.scale == 1 / 255  # off by default: pixels scaled
    agent.close()


@pytest.mark.parametrize("images", [False, True], ids=["uint8", "normalize_images"])
def test_cnn_resume_is_bit_exact(tmp_path, images):
    steps = 8 * 128
    whole = TRPO(ENV_ID, seed=0, normalize_images=images, **SMALL)
    rows_whole: list = []
    whole.learn(steps, callback=rows_whole.append)
    first = TRPO(ENV_ID, seed=0, normalize_images=images, **SMALL)
    rows: list = []
    first.learn(steps // 2, callback=rows.append, run_dir=tmp_path)
    first.close()
    second = Agent.load(tmp_path / "checkpoints" / "last")
    second.learn(steps // 2, callback=rows.append)
    assert untimed(rows) == untimed(rows_whole)
    assert torch.equal(flat_params(second.policy), flat_params(whole.policy))
    whole.close()


@pytest.mark.slow
def test_cnn_learns_to_read_the_frame():
    """Uniform play earns 10 per 20-step episode, reading the frame 20. Measured (seeds 0-2, 12,288
    steps): training return 20.0, 20.0, 20.0 over the last updates, every evaluation 20."""
    runs = train_seeds(
        lambda s: TRPO(ENV_ID, seed=s, num_envs=4, steps_per_env=128, tensorboard=False), 12_288
    )
    assert median(r.late_return for r in runs) >= 17, summary(runs)
    assert median(r.final for r in runs) >= 18, summary(runs)


@pytest.mark.parametrize("env", ["MinAtar/Breakout-v1", "ALE/Pong-v5"])
def test_minatar_and_atari_run_end_to_end(env):
    pytest.importorskip("minatar" if env.startswith("MinAtar") else "ale_py")
    if env.startswith("ALE"):
        pytest.importorskip("cv2")
    agent = TRPO(env, seed=0, num_envs=2, steps_per_env=32, progress=False, tensorboard=False)
    rows: list = []
    agent.learn(128, callback=rows.append)
    space = agent.observation_space
    assert space.shape == ((4, 84, 84) if env.startswith("ALE") else (10, 10, 4))
    assert isinstance(agent.policy, CNNActor) and rows[-1]["env_steps"] == 128
    assert not rows[-1]["skipped"] and 0 < rows[-1]["measured_kl"] <= 0.01 + 1e-9
    t = agent.trainer
    batch = t._ensure_collector().collect(t.actor, t.critic, 4)
    assert batch.obs.dtype == torch.uint8 and batch.obs.shape[-1] == int(np.prod(space.shape))  # compact
    mean, _, _ = agent.evaluate(1, max_episode_steps=200)
    assert mean == mean  # a number: the episode ran with the standard wrappers
    agent.close()


def test_cli_trains_the_cnn_asked_for_and_evaluates_it(tmp_path, capsys):
    run = tmp_path / "r"
    code = main(["train", "--env", ENV_ID, "--policy", "cnn", "--steps", "256", "--num-envs", "2",
                 "--steps-per-env", "64", "--run-dir", str(tmp_path), "--run-name", "r", "--no-progress",
                 "--no-tensorboard", "--eval-episodes", "2"])  # fmt: skip
    assert code == 0
    assert json.loads((run / "config.json").read_text())["policy"] == "cnn"
    assert isinstance(Agent.load(run / "checkpoints" / "last").policy, CNNActor)
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "2"]) == 0
    assert "deterministic, 2 episodes" in capsys.readouterr().out
    # Flat observations: one line naming what is wrong, nothing created.
    code = main(["train", "--env", "CartPole-v1", "--policy", "cnn", "--run-dir", str(tmp_path),
                 "--run-name", "flat", "--no-progress", "--no-tensorboard"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "image observations" in err and err.count("\n") == 1, err
    assert not (tmp_path / "flat").exists()


def test_cli_cnn_dense_sizes_shape_the_saved_networks_and_hidden_sizes_is_said_unused(tmp_path, caplog):
    """--cnn-dense-sizes reaches actor and critic, the checkpoint loads them at those widths; a
    --hidden-sizes the CNN does not use is said so (once), not silently dropped."""
    run = tmp_path / "r"
    with caplog.at_level(logging.WARNING, logger="trustpg"):
        code = main(["train", "--env", ENV_ID, "--policy", "cnn", "--cnn-dense-sizes", "24", "12",
                     "--hidden-sizes", "256", "--steps", "256", "--num-envs", "2", "--steps-per-env", "64",
                     "--run-dir", str(tmp_path), "--run-name", "r", "--no-progress", "--no-tensorboard",
                     "--eval-episodes", "0"])  # fmt: skip
    assert code == 0
    said = [r.getMessage() for r in caplog.records if "not used by the CNN" in r.getMessage()]
    assert said == ["hidden_sizes=[256] is not used by the CNN: --cnn-dense-sizes sizes its dense "
                    "layers (unset: the paper's one layer)"]  # fmt: skip
    assert json.loads((run / "config.json").read_text())["cnn_dense_sizes"] == [24, 12]
    agent = Agent.load(run / "checkpoints" / "last")
    widths = [m.out_features for m in agent.policy.trunk.fc if isinstance(m, torch.nn.Linear)]
    assert widths == [24, 12] and agent.critic.trunk.features == 12
    agent.close()
