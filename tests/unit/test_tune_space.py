"""``trustpg tune``'s search spaces: the defaults are valid, a file changes them, every kind of entry
samples a value TrainConfig accepts (lists such as hidden_sizes included)."""

from __future__ import annotations

import pytest

from trustpg.app.tune_space import DEFAULT_SPACES, load_space, suggest
from trustpg.config.train_config import TrainConfig
from trustpg.errors import UserError

optuna = pytest.importorskip("optuna")


@pytest.mark.parametrize("algo", sorted(DEFAULT_SPACES))
def test_default_spaces_sample_valid_configs(algo):
    base = TrainConfig(algo=algo, env="Pendulum-v1")
    space = load_space(None, algo, base, continuous=True)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        config = base.replace(**suggest(study.ask(), space))
        assert config.batch_size >= 256


@pytest.mark.parametrize("field", ["max_kl", "damping"])
def test_default_space_holds_every_presets_trust_region(field):
    """A default search that excludes the presets' own settings (Ant-v5's δ = 0.08, λ = 0.8, sb3's
    Zoo settings in trustpg's units) could never find them."""
    from trustpg.config.presets import PRESETS

    param = DEFAULT_SPACES["trpo"][field]
    used = {env: o[field] for p in PRESETS.values() for env, o in p.items() if field in o}
    assert used, field
    for env, value in used.items():
        assert param.low <= value <= param.high, (env, value)


def test_log_std_is_searched_only_for_continuous_actions():
    base = TrainConfig()
    assert "log_std_init" not in load_space(None, "trpo", base, continuous=False)
    assert "log_std_init" in load_space(None, "trpo", base, continuous=True)


def test_a_file_changes_adds_and_fixes_entries(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(
        '{"hidden_sizes": {"type": "categorical", "choices": [[32, 32], [64]]},'
        ' "cg_iters": {"type": "int", "low": 5, "high": 25},'
        ' "vf_epochs": {"type": "fixed", "value": 7},'
        ' "max_kl": {"type": "float", "low": 0.002, "high": 0.004}}'
    )
    space = load_space(path, "trpo", TrainConfig(), continuous=False)
    assert "gamma" in space  # the defaults stay unless replace = true
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        config = TrainConfig().replace(**suggest(trial, space))
        seen.add(config.hidden_sizes)
        assert 5 <= config.cg_iters <= 25 and config.vf_epochs == 7
        assert 0.002 <= config.max_kl <= 0.004
        study.tell(trial, 0.0)
    assert seen == {(32, 32), (64,)}


def test_replace_makes_the_file_the_whole_space(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text('replace = true\n[max_kl]\ntype = "float"\nlow = 0.001\nhigh = 0.01\n')
    assert list(load_space(path, "trpo", TrainConfig(), continuous=True)) == ["max_kl"]


def test_a_value_valid_alone_but_not_with_the_base_is_refused(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text('[fvp_stride]\ntype = "fixed"\nvalue = 100000\n')
    with pytest.raises(UserError, match="fvp_stride=100000 is not a valid value"):
        load_space(path, "trpo", TrainConfig(), continuous=True)
