"""Recurrent policies end to end (issue 21 item 1): collection carries each env's state from batch
to batch and zeroes it at episode ends, the recurrent critic's values are those of its sequences,
checkpoints resume bit for bit, the CLI trains one and says which fast paths do not apply, and a
GRU and an LSTM learn the velocity-free CartPole an MLP cannot (seeds 0-2)."""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch
from _learning import median, summary, train_seeds
from _runs import untimed

from trustpg import TRPO, Agent
from trustpg.accel import fallback
from trustpg.app.cli import main
from trustpg.core.linalg import flat_params
from trustpg.nets.recurrent import unpack

ENV = "trustpg/CartPoleNoVel-v1"
SMALL = dict(num_envs=2, steps_per_env=64, progress=False, tensorboard=False, eval_episodes=0)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_states_carry_across_batches_and_the_critic_values_are_its_sequences(cell):
    agent = TRPO(ENV, seed=0, policy=cell, num_envs=3, steps_per_env=50, progress=False)
    t = agent.trainer
    sampler = t._ensure_collector()
    first = sampler.collect(t.actor, t.critic, 50)
    second = sampler.collect(t.actor, t.critic, 50)
    assert first.policy_input is not None and first.critic_input is not None
    done = first.terminated | first.truncated
    assert done.any()  # episodes of a random policy end within 50 steps: resets are exercised
    with torch.no_grad():
        # The critic's values are those of its packed sequences (env-major [N, T]).
        assert torch.allclose(t.critic(first.critic_input), first.values.T, atol=1e-6)
        ends = ~done[:-1]  # V(s_{t+1}) where the episode went on
        assert torch.allclose(first.next_values[:-1][ends], first.values[1:][ends], atol=1e-6)
        # The actor's state after the first batch, zeroed where an episode ended at its last
        # step, is where the second batch's sequences start.
        state, starts, obs = unpack(first.policy_input, t.actor.state_size, t.actor.obs_dim)
        for k in range(obs.shape[1]):
            state = t.actor.step(obs[:, k], state * (1 - starts[:, k : k + 1]))[1]
        state = state * (~done[-1]).float().unsqueeze(-1)
        carried = second.policy_input[:, : t.actor.state_size]
        assert torch.allclose(carried, state, atol=1e-6) and carried.abs().sum() > 0
        assert torch.equal(starts.T[1:].bool(), done[:-1])  # a start flag after every episode end
    agent.close()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_resume_is_bit_exact(tmp_path, cell):
    steps = 8 * 128
    whole = TRPO(ENV, seed=0, policy=cell, **SMALL)
    rows_whole: list = []
    whole.learn(steps, callback=rows_whole.append)

    first = TRPO(ENV, seed=0, policy=cell, **SMALL)
    rows: list = []
    first.learn(steps // 2, callback=rows.append, run_dir=tmp_path)
    first.close()
    second = Agent.load(tmp_path / "checkpoints" / "last")
    assert second.config.policy == cell
    second.learn(steps // 2, callback=rows.append)

    assert untimed(rows) == untimed(rows_whole)
    assert torch.equal(flat_params(second.policy), flat_params(whole.policy))
    ta, tb = second.trainer.state()[0], whole.trainer.state()[0]
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    sa, sb = second.trainer.state()[1]["collector"], whole.trainer.state()[1]["collector"]
    assert sa["recurrent"] == sb["recurrent"] and set(sa["recurrent"]) == {"actor_state", "critic_state"}
    whole.close()


@pytest.mark.parametrize("cell, other", [("gru", "lstm"), ("lstm", "gru")])
def test_cli_trains_a_recurrent_policy_and_names_the_fast_paths_it_leaves(
    tmp_path, caplog, capsys, cell, other
):
    fallback.reset()
    with caplog.at_level(logging.INFO, logger="trustpg"):
        code = main(["train", "--env", ENV, "--policy", cell, "--steps", "1024", "--num-envs", "2",
                     "--steps-per-env", "128", "--run-dir", str(tmp_path), "--run-name", "r",
                     "--eval-episodes", "2", "--no-tensorboard"])  # fmt: skip
    assert code == 0
    said = caplog.text
    assert "sampler off: RecurrentActor" in said and "critic worker process off: RecurrentCritic" in said
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["policy"] == cell
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["env_steps"] >= 1024
    assert main(["eval", str(tmp_path / "r"), "--episodes", "2"]) == 0  # loads the recurrent actor
    assert "deterministic, 2 episodes" in capsys.readouterr().out
    # --resume with another network is refused (the policy is part of a run's identity).
    code = main(["train", "--resume", str(tmp_path / "r"), "--policy", other, "--steps", "2048"])
    assert code != 0
    assert "policy" in capsys.readouterr().err


def _cartpole(policy: str):
    def make(seed: int) -> Agent:  # the classic preset's settings, as the benchmark runs
        return TRPO(ENV, seed=seed, policy=policy, eval_every=10, eval_episodes=5, tensorboard=False)

    return make


@pytest.mark.slow
def test_a_gru_balances_the_pole_without_velocities_an_mlp_cannot():
    """Measured in bench-runs/pomdp (docs/benchmarks.md, "Recurrent policies"), 50k steps, seeds
    0-4: the GRU's final evaluation 500, 494, 500, 370, 202 and its training return over the last 10
    updates 418, 450, 370, 329, 356; the MLP's final evaluation 41-50, training return never above
    62 (last 10 updates 48-51). The bars sit well inside both ranges."""
    gru = train_seeds(_cartpole("gru"), 50_000)
    mlp = train_seeds(_cartpole("mlp"), 50_000)
    assert median(r.late_return for r in gru) >= 200, summary(gru)
    assert median(r.final for r in gru) >= 150, summary(gru)
    assert median(r.best for r in mlp) < 150, summary(mlp)
    assert median(r.late_return for r in mlp) < 100, summary(mlp)


@pytest.mark.slow
def test_an_lstm_balances_the_pole_without_velocities():
    """The LSTM's counterpart of the test above (the MLP's side is there). Measured in
    bench-runs/pomdp at 6f03454 (docs/benchmarks.md, "Recurrent policies"), 50k steps, seeds 0-4:
    final evaluation 500, 500, 412, 451, 212; training return over the last 10 updates 282, 332,
    296, 283, 276. The GRU's bars hold with a wide margin (the MLP: best evaluation below 150,
    last 10 updates below 100)."""
    lstm = train_seeds(_cartpole("lstm"), 50_000)
    assert median(r.late_return for r in lstm) >= 200, summary(lstm)
    assert median(r.final for r in lstm) >= 150, summary(lstm)


class _Spy:
    """The trainer's update rule, recording the PolicyBatch it is given."""

    def __init__(self, inner) -> None:
        self.inner, self.seen = inner, []

    def update(self, actor, batch):
        self.seen.append(batch)
        return self.inner.update(actor, batch)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_update_sees_gae_advantages_aligned_with_its_sequences(cell):
    """GAE is unchanged for a recurrent policy: the advantage the update pairs with the action of
    env n at step t is GAE(γ, λ) of that env's rewards and values (a plain loop here), and the
    sequence position it pairs them with is where the actor, stepped along env n with resets at
    episode ends, gave that action's log-probability."""
    gamma, lam, T, N = 0.97, 0.9, 40, 3
    agent = TRPO(ENV, seed=1, policy=cell, num_envs=N, steps_per_env=T, gamma=gamma, gae_lambda=lam,
                 normalize_advantages=False, progress=False, tensorboard=False, eval_episodes=0)  # fmt: skip
    t = agent.trainer
    sampler = t._ensure_collector()
    batches = []
    collect = sampler.collect
    sampler.collect = lambda *a, **k: batches.append(collect(*a, **k)) or batches[-1]
    spy = _Spy(t.rule)
    t.rule = spy
    with torch.no_grad():
        before = copy.deepcopy(t.actor)
    agent.learn(T * N)
    (batch,), (seen,) = batches, spy.seen
    done = (batch.terminated | batch.truncated).bool()
    assert done.any()
    r, v, nv = batch.rewards.double(), batch.values.double(), batch.next_values.double()
    with torch.no_grad():
        state, starts, obs = unpack(batch.policy_input, before.state_size, before.obs_dim)
        logp = before(batch.policy_input).log_prob(seen.actions)
    for n in range(N):
        running = 0.0
        want = [0.0] * T
        for k in reversed(range(T)):
            boot = 0.0 if batch.terminated[k, n] else gamma * float(nv[k, n])
            delta = float(r[k, n]) + boot - float(v[k, n])
            running = delta + (0.0 if done[k, n] else gamma * lam * running)
            want[k] = running
        got = seen.advantages[n * T : (n + 1) * T].double()
        torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-5, atol=1e-5)
        s = state[n : n + 1]
        for k in range(T):
            with torch.no_grad():
                dist, s = before.step(obs[n : n + 1, k], s * (1 - starts[n : n + 1, k : k + 1]))
            assert seen.actions[n * T + k] == batch.actions[k, n]
            torch.testing.assert_close(dist.log_prob(batch.actions[k, n : n + 1])[0], logp[n * T + k],
                                       rtol=1e-5, atol=1e-6)  # fmt: skip
    agent.close()
