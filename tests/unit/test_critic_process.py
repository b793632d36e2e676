"""The NumPy critic worker (trustpg.accel.critic_worker) against autograd and torch's Adam, and the
process path of CriticFitter: same minibatches, same results up to float32 rounding, and a
worker that fails or dies costs nothing (the fit is redone in-process)."""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from trustpg.accel import critic_worker as cw
from trustpg.accel import fallback, np_mlp
from trustpg.accel.critic_process import CriticProcess, make_job
from trustpg.core.linalg import flat_params
from trustpg.core.optim import Adam
from trustpg.errors import CriticWorkerError
from trustpg.nets.policies import Critic
from trustpg.train import value as value_mod
from trustpg.train.value import CriticFitter, fit_value

ACTIVATIONS = ("tanh", "relu", "elu")


def _critic(activation: str = "tanh", dtype=torch.float32, seed: int = 0) -> Critic:
    torch.manual_seed(seed)
    critic = Critic(4, (6, 5), activation).to(dtype)
    with torch.no_grad():
        for p in critic.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return critic


def _layers(critic: Critic) -> list[tuple[np.ndarray, np.ndarray]]:
    lin = [m for m in critic.net if isinstance(m, nn.Linear)]
    return [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()) for m in lin]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_numpy_gradient_equals_autograd(activation: str) -> None:
    critic = _critic(activation, torch.float64)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(33, 4, generator=g, dtype=torch.float64)
    y = torch.randn(33, generator=g, dtype=torch.float64)
    expected = torch.autograd.grad((critic(x) - y).pow(2).mean(), list(critic.parameters()))
    layers = _layers(critic)
    grads = [(np.zeros_like(w), np.zeros_like(b)) for w, b in layers]
    np_mlp.mse_gradient([(w.T, b) for w, b in layers], activation, x.numpy(), y.numpy(), grads)
    flat = [a for pair in grads for a in pair]
    for got, want in zip(flat, expected, strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)


def test_numpy_adam_equals_torch_adam() -> None:
    p = torch.randn(50)
    g = [torch.randn(50) for _ in range(5)]
    ref = nn.Parameter(p.clone())
    opt = Adam([ref], lr=3e-3)
    mine, m, v = p.numpy().copy(), np.zeros(50, np.float32), np.zeros(50, np.float32)
    for k, gk in enumerate(g, start=1):
        ref.grad = gk.clone()
        opt.step()
        np_mlp.adam_step(mine, gk.numpy(), m, v, float(k), 3e-3, 0.9, 0.999, 1e-8)
    np.testing.assert_allclose(mine, ref.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(m, opt.state[0]["exp_avg"].numpy(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(v, opt.state[0]["exp_avg_sq"].numpy(), rtol=1e-5, atol=1e-10)


def _data(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.randn(n, 4, generator=g), 5 * torch.randn(n, generator=g)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_process_fit_matches_in_process_fit(activation: str) -> None:
    """Two fits in a row (the second starts from the first's Adam state) through the real child
    process, against fit_value in this process with the same generator."""
    obs, ret = _data()
    ref, mine = _critic(activation), _critic(activation)
    ref_opt, opt = Adam(ref.parameters(), lr=1e-2), Adam(mine.parameters(), lr=1e-2)
    ref_gen, gen = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    fitter = CriticFitter(mine, opt, gen, epochs=4, minibatch_size=32, overlap=True, process=True)
    assert fitter.process
    try:
        for scale in (1.0, 2.0):
            want = fit_value(ref, ref_opt, obs, ret * scale, epochs=4, minibatch_size=32, generator=ref_gen)
            fitter.start(obs, ret * scale)
            assert fitter._worker is not None and fitter._worker.pid is not None
            fitter.finish()
            got = fitter.take_losses()
            assert got == pytest.approx(want, rel=1e-4)
            assert got[1] < got[0]
            torch.testing.assert_close(flat_params(mine), flat_params(ref), rtol=1e-4, atol=1e-5)
            for k in ref_opt.state:
                for key in ("exp_avg", "exp_avg_sq"):
                    torch.testing.assert_close(opt.state[k][key], ref_opt.state[k][key], rtol=1e-3, atol=1e-7)
                assert float(opt.state[k]["step"]) == float(ref_opt.state[k]["step"])
        assert torch.equal(gen.get_state(), ref_gen.get_state())  # same minibatch draws
    finally:
        fitter.close()
    assert fitter._worker is None


def _fitter(process: bool = True) -> tuple[CriticFitter, Critic]:
    critic = _critic()
    opt = Adam(critic.parameters(), lr=1e-2)
    return CriticFitter(critic, opt, torch.Generator().manual_seed(3), epochs=2, minibatch_size=32,
                        overlap=True, process=process), critic  # fmt: skip


def _reference_after_one_fit() -> torch.Tensor:
    critic = _critic()
    opt = Adam(critic.parameters(), lr=1e-2)
    obs, ret = _data()
    fit_value(critic, opt, obs, ret, epochs=2, minibatch_size=32, generator=torch.Generator().manual_seed(3))
    return flat_params(critic)


def test_dead_worker_falls_back_to_an_in_process_fit(caplog: pytest.LogCaptureFixture) -> None:
    fitter, critic = _fitter()
    obs, ret = _data()
    try:
        fitter.start(obs, ret)
        assert fitter._worker is not None and fitter._worker.pid is not None
        os.kill(fitter._worker.pid, signal.SIGKILL)
        fitter.finish()
        # The redo uses the permutations already drawn: exactly the in-process fit.
        assert torch.equal(flat_params(critic), _reference_after_one_fit())
        assert "critic worker died" in caplog.text and "in this process instead" in caplog.text
        fitter.start(obs, ret)  # a new worker is started for the next fit
        fitter.finish()
        assert all(math.isfinite(x) for x in fitter.take_losses())
    finally:
        fitter.close()


def test_worker_error_falls_back(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken_job(*args: object, **kw: object) -> dict:
        job = make_job(*args, **kw)  # type: ignore[arg-type]
        job["shapes"] = job["shapes"][:-1]  # the worker cannot rebuild the layers from this
        return job

    monkeypatch.setattr(value_mod, "make_job", broken_job)
    fitter, critic = _fitter()
    obs, ret = _data()
    try:
        fitter.start(obs, ret)
        fitter.finish()
    finally:
        fitter.close()
    assert torch.equal(flat_params(critic), _reference_after_one_fit())
    assert "critic worker failed" in caplog.text


def test_worker_that_cannot_start_falls_back(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    def cannot_start(self: CriticProcess) -> None:
        raise CriticWorkerError("could not start the critic worker: test")

    monkeypatch.setattr(CriticProcess, "_start", cannot_start)
    fitter, critic = _fitter()
    obs, ret = _data()
    fitter.start(obs, ret)
    fitter.finish()
    fitter.close()
    assert torch.equal(flat_params(critic), _reference_after_one_fit())
    assert "could not start" in caplog.text


def test_process_only_for_supported_float32_critics(caplog: pytest.LogCaptureFixture) -> None:
    assert _fitter(process=True)[0].process
    assert not _fitter(process=False)[0].process
    opt_args = dict(epochs=1, minibatch_size=8, overlap=True, process=True)
    c64 = _critic(dtype=torch.float64)
    fallback.reset()
    with caplog.at_level("INFO", logger="trustpg"):
        assert not CriticFitter(c64, Adam(c64.parameters()), torch.Generator(), **opt_args).process
        assert not CriticFitter(c64, Adam(c64.parameters()), torch.Generator(), **opt_args).process
    said = [r.getMessage() for r in caplog.records if "critic worker process off" in r.getMessage()]
    assert said == ["critic worker process off: the critic's parameters are not float32; "
                    "the critic is fitted on a thread (~2.7x slower)"]  # once  # fmt: skip
    elu = _critic("elu")
    elu.net[1].alpha = 0.5  # the spec carries α to the worker's kernel
    assert CriticFitter(elu, Adam(elu.parameters()), torch.Generator(), **opt_args).process
    caplog.clear()
    with caplog.at_level("INFO", logger="trustpg"):
        no_overlap = CriticFitter(_critic(), Adam(_critic().parameters()), torch.Generator(),
                                  epochs=1, minibatch_size=8, overlap=False, process=True)  # fmt: skip
    assert not no_overlap.process
    said = [r.getMessage() for r in caplog.records if "critic worker process off" in r.getMessage()]
    assert said == ["critic worker process off: the fit is not overlapped with sampling (critic_overlap "
                    "off, or Ray workers sample); the critic is fitted in this process after each "
                    "batch"]  # fmt: skip


def test_worker_script_imports_numpy_only() -> None:
    """The child must not import torch (~220 MB): run the worker module's imports in a fresh
    interpreter, as ``python -m trustpg.accel.critic_worker`` does (without running main)."""
    import subprocess
    import sys

    code = "import runpy, sys; runpy.run_module('trustpg.accel.critic_worker'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_prepare_starts_the_worker_before_the_first_fit() -> None:
    fitter, critic = _fitter()
    try:
        fitter.prepare()
        assert fitter._worker is not None and fitter._worker.pid is not None
        pid = fitter._worker.pid
        obs, ret = _data()
        fitter.start(obs, ret)
        fitter.finish()
        assert fitter._worker.pid == pid  # the same child did the fit
        torch.testing.assert_close(flat_params(critic), _reference_after_one_fit(), rtol=1e-4, atol=1e-5)
    finally:
        fitter.close()
    no_process, _ = _fitter(process=False)
    no_process.prepare()
    assert no_process._worker is None


def test_trainer_prepare_makes_envs_and_worker_and_training_continues() -> None:
    from trustpg import TRPO

    agent = TRPO("CartPole-v1", seed=0, num_envs=2, steps_per_env=32, progress=False, tensorboard=False)
    try:
        agent.trainer.prepare()
        assert agent.trainer.collector is not None
        worker = agent.trainer.critic_fit._worker
        assert worker is not None and worker.pid is not None
        rows: list[dict] = []
        agent.learn(3 * 64, callback=rows.append)
        assert len(rows) == 3 and math.isfinite(rows[-1]["value_loss"])
    finally:
        agent.close()


def test_worker_of_a_dropped_fitter_exits() -> None:
    """An agent that is never closed must not leave its worker behind once it is collected."""
    import gc

    fitter, _ = _fitter()
    fitter.prepare()
    assert fitter._worker is not None and fitter._worker._proc is not None
    proc = fitter._worker._proc
    del fitter
    gc.collect()
    assert proc.wait(timeout=10) == 0


def test_worker_peak_memory_is_its_own_not_the_forked_parents() -> None:
    fitter, _ = _fitter()
    obs, ret = _data()
    fitter.start(obs, ret)
    fitter.finish()
    fitter.close()
    # NumPy and the job only: tens of MB, not the parent's ~300 MB image it had before exec.
    assert 5 < fitter.worker_peak_rss_mb < 120


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="F_GETPIPE_SZ is Linux-only")
def test_job_fits_in_the_pipe_so_submit_does_not_wait_for_the_child() -> None:
    """A Hopper-sized job (2,048 states, 20 epochs) fits in the widened pipe whole: submit returns
    while the child is stopped, i.e. before anything is read. With the default 64 KiB pipe the
    write would block on the stopped child."""
    import fcntl

    critic = Critic(11)
    gen = torch.Generator().manual_seed(0)
    perms = [torch.randperm(2048, generator=gen) for _ in range(20)]
    spec = critic.mlp_spec()
    assert spec is not None
    job = make_job(spec, Adam(critic.parameters()), torch.randn(2048, 11), torch.randn(2048), perms, 128)
    assert job["perms"].dtype == np.int32
    proc = CriticProcess()
    proc.start()
    assert proc._proc is not None and proc._proc.stdin is not None
    assert fcntl.fcntl(proc._proc.stdin.fileno(), getattr(fcntl, "F_GETPIPE_SZ", 1032)) >= 1 << 20
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        done = threading.Event()
        writer = threading.Thread(target=lambda: (proc.submit(job), done.set()), daemon=True)
        writer.start()
        assert done.wait(5.0), "submit blocked on a stopped child"
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    reply = proc.result()
    proc.close()
    want = cw.fit({**job, "perms": job["perms"].astype(np.int64)})
    # The child runs OpenBLAS on one thread, this process on as many as it likes: the sums in the
    # matrix products are grouped differently, so the same fit agrees to float32 rounding only.
    np.testing.assert_allclose(reply["params"], want["params"], rtol=1e-4, atol=1e-6)


def test_ctrl_c_while_the_worker_starts_leaves_it_running(capfd, caplog) -> None:
    """A terminal's Ctrl-C can reach the worker while its interpreter still starts (importing
    ``site``, NumPy): it was seen to die there ("Fatal Python error: init_import_site", a
    KeyboardInterrupt traceback). The worker starts with SIGINT blocked, then ignores it: only its
    parent ends it. SIGINTs sent over its first 0.4 s and after its first fit change nothing."""
    fitter, _ = _fitter()
    try:
        fitter.prepare()
        assert fitter._worker is not None and fitter._worker.pid is not None
        pid = fitter._worker.pid
        for _ in range(20):
            os.kill(pid, signal.SIGINT)
            time.sleep(0.02)
        obs, ret = _data()
        fitter.start(obs, ret)
        fitter.finish()
        os.kill(pid, signal.SIGINT)
        fitter.start(obs, ret)
        fitter.finish()
        assert fitter._worker.pid == pid and "in this process instead" not in caplog.text
        err = capfd.readouterr().err
        assert "KeyboardInterrupt" not in err and "Traceback" not in err, err
        assert all(math.isfinite(x) for x in fitter.take_losses())
    finally:
        fitter.close()


def test_the_wait_for_the_critic_worker_is_60_s_or_50_times_its_last_fit():
    """The documented defaults (docs/reliability.md, No hangs), which the hang tests shorten."""
    proc = CriticProcess()
    assert proc.timeout() == 60.0  # before any fit: room to start Python and NumPy
    proc.last_fit_seconds = 0.5
    assert proc.timeout() == 60.0
    proc.last_fit_seconds = 3.0
    assert proc.timeout() == 150.0
