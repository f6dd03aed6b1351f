import pytest

from ptrag.config import Config, apply_overrides, config_to_dict, load_config, save_config
from ptrag.errors import ConfigError


def test_presets_load_with_their_values() -> None:
    paper = load_config("paper")
    assert (paper.model.hidden_dim, paper.train.sets_per_batch, paper.train.cell_set_len) == (128, 64, 64)
    assert (paper.retrieval.top_k, paper.retrieval.tau, paper.retrieval.sparsity_weight) == (32, 0.5, 0.1)
    assert paper.train.lr == 1e-3 and paper.train.grad_clip == 10.0
    small = load_config("cpu-small")
    assert small.model.hidden_dim == 64 and small.train.max_steps == 2000


def test_overrides_are_typed() -> None:
    config = load_config(
        "cpu-small", ["train.max_steps=42", "model.arm=st", "train.lr=0.01", "model.use_batch=false"]
    )
    assert config.train.max_steps == 42 and isinstance(config.train.max_steps, int)
    assert config.model.arm == "st" and config.train.lr == 0.01 and config.model.use_batch is False


def test_unknown_key_names_the_key_and_the_closest_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"'train\.max_step'.*Did you mean 'max_steps'"):
        load_config(None, ["train.max_step=5"])
    with pytest.raises(ConfigError, match=r"Unknown config section 'trian'.*'train'"):
        load_config(None, ["trian.max_steps=5"])


def test_bad_values_are_errors_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"Unknown arm 'gpt'\. Registered arms: 'st', 'st_onehot'"):
        load_config(None, ["model.arm=gpt"])
    with pytest.raises(ConfigError, match=r"train\.max_steps must be an integer"):
        load_config(None, ["train.max_steps=1.5"])
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        load_config(None, ["max_steps"])


def test_toml_and_yaml_files_round_trip(tmp_path) -> None:
    config = load_config("cpu-small", ["model.arm=vanilla_rag", "data.control_label=NT"])
    save_config(config, tmp_path / "c.toml")
    assert load_config(tmp_path / "c.toml") == config
    (tmp_path / "c.yaml").write_text("model:\n  arm: memory\ntrain:\n  seed: 7\n")
    loaded = load_config(tmp_path / "c.yaml")
    assert loaded.model.arm == "memory" and loaded.train.seed == 7
    assert loaded.model.hidden_dim == Config().model.hidden_dim


def test_unknown_key_in_a_file_is_reported(tmp_path) -> None:
    (tmp_path / "bad.toml").write_text("[model]\nhiden_dim = 3\n")
    with pytest.raises(ConfigError, match=r"'model\.hiden_dim'.*'hidden_dim'"):
        load_config(tmp_path / "bad.toml")


def test_config_is_frozen_and_overrides_return_a_new_config() -> None:
    base = load_config()
    changed = apply_overrides(base, ["train.seed=3"])
    assert base.train.seed == 0 and changed.train.seed == 3
    with pytest.raises(AttributeError):
        base.train.seed = 5  # type: ignore[misc]
    assert "control_label" not in config_to_dict(base)["data"]  # None is left out of TOML


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=-1", "train.lr must be greater than 0, got -1.0."),
        ("train.lr=0", "train.lr must be greater than 0, got 0.0."),
        ("model.hidden_dim=0", "model.hidden_dim must be at least 1, got 0."),
        ("train.max_steps=-5", "train.max_steps must be at least 1, got -5."),
        ("train.max_steps=0", "train.max_steps must be at least 1, got 0."),
        ("retrieval.top_k=0", "retrieval.top_k must be at least 1, got 0."),
        ("retrieval.tau=0", "retrieval.tau must be greater than 0, got 0.0."),
        ("model.dropout=1", "model.dropout must be in [0, 1), got 1.0."),
        ("train.val_fraction=-0.1", "train.val_fraction must be in [0, 1), got -0.1."),
        ("train.patience=-1", "train.patience must be at least 0, got -1."),
        ("train.seed=-3", "train.seed must be at least 0, got -3."),
        ("model.n_heads=3", "model.hidden_dim (64) must be a multiple of model.n_heads (3)."),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("cpu-small", [override])
    assert str(caught.value) == message


def test_an_arm_brings_its_settings_and_set_overrides_win() -> None:
    from ptrag.config import ARMS, get_arm

    paper = load_config("cpu-small", ["model.arm=ptrag_paper"])
    assert (paper.retrieval.combine, paper.retrieval.sparsity_weight) == ("replace_sum", 0.1)
    assert get_arm("ptrag_paper").kind.name == "ptrag"
    onehot = load_config("cpu-small", ["model.arm=st_onehot"])
    assert onehot.model.pert_encoding == "onehot" and get_arm("st_onehot").kind.head is None
    mine = load_config("cpu-small", ["model.arm=ptrag_paper", "retrieval.combine=residual_mean"])
    assert mine.retrieval.combine == "residual_mean"
    assert load_config("cpu-small", ["model.arm=ptrag"]).retrieval.combine == "residual_mean"
    for name, arm in ARMS.items():
        config = load_config("cpu-small", [f"model.arm={name}"])
        assert config.model.arm == name and arm.description


def test_saved_configs_are_read_back_exactly(tmp_path) -> None:
    from ptrag.config import read_saved_config

    config = load_config("cpu-small", ["model.arm=ptrag_paper", "retrieval.combine=residual_mean"])
    save_config(config, tmp_path / "config.toml")
    assert read_saved_config(tmp_path / "config.toml") == config


def test_arm_lists_are_checked_before_anything_runs() -> None:
    from ptrag.config import parse_arms

    assert [a.name for a in parse_arms("st, ptrag_paper")] == ["st", "ptrag_paper"]
    with pytest.raises(ConfigError, match=r"Unknown arm 'foo'"):
        parse_arms("st,foo")
    with pytest.raises(ConfigError, match=r"'st' more than once"):
        parse_arms("st,st")
