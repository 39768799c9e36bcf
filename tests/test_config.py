"""Typed configuration: one place for defaults, precedence defaults < plugin < file < flags,
unknown keys refused with a hint, and hub weights only where models are timm models."""

from __future__ import annotations

import dataclasses

import click
import click.testing
import pytest
import yaml
from tl.core import ConfigError, Plugin, RunConfig, option
from tl.core.config import click_options, resolve_config


@dataclasses.dataclass(frozen=True)
class _Options:
    cost_fn: float = option(10.0, "Cost of a miss.", type=float)
    columns: tuple[str, ...] = option((), "Columns.", multiple=True)
    mode: str = option("a", "Mode.", type=click.Choice(["a", "b"]))


class _Tabular(Plugin):
    name = "tabular"
    default_backbone = "tiny"
    hub_weights = False
    defaults = {"dropout": 0.2, "epochs": 3}
    options_type = _Options


def _resolve(flags=None, config=None, tmp_path=None):
    path = None
    if config is not None:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
    return resolve_config(_Tabular(), {"data": ".", **(flags or {})}, path)


def test_defaults_then_plugin_defaults_then_file_then_flags(tmp_path):
    config = _resolve(tmp_path=tmp_path)
    assert config["lr"] == RunConfig().lr and config["dropout"] == 0.2 and config["epochs"] == 3
    assert config["weights"] == "none" and config["backbone"] == "tiny"
    assert config.plugin.cost_fn == 10.0 and config["cost_fn"] == 10.0
    config = _resolve({"epochs": 7}, {"epochs": 5, "cost_fn": 20, "lr": "3e-3"}, tmp_path)
    assert config["epochs"] == 7  # the flag beats the file
    assert config["cost_fn"] == 20.0 and config["lr"] == 3e-3  # file values typed like flags
    assert isinstance(config.core, RunConfig)


def test_a_run_config_round_trips(tmp_path):
    first = _resolve({"epochs": 2, "columns": ("x", "y")}, {"mode": "b"}, tmp_path)
    saved = {"plugin": "tabular", **first.to_dict()}
    again = resolve_config(_Tabular(), {}, None, saved=saved)
    assert again.to_dict() == first.to_dict()
    assert again["columns"] == ("x", "y")


def test_unknown_config_key_is_an_error_with_a_hint(tmp_path):
    with pytest.raises(ConfigError) as err:
        _resolve(config={"epoch": 2}, tmp_path=tmp_path)
    line = err.value.line()
    assert "unknown key 'epoch'" in line and "did you mean 'epochs'?" in line
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        _resolve(config={"learning_rate": 0.01}, tmp_path=tmp_path)
    with pytest.raises(ConfigError, match="did you mean '--cost-fn'"):
        _resolve({"cost_fm": 2.0}, tmp_path=tmp_path)


def test_a_config_for_another_plugin_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="for the medical plugin"):
        _resolve(config={"plugin": "medical", "epochs": 2}, tmp_path=tmp_path)


@pytest.mark.parametrize(
    "config, expected",
    [({"epochs": 0}, "bad value for epochs"), ({"mode": "c"}, "bad value for mode"),
     ({"compare_scratch": "yes"}, "not true or false"), ({"lr": float("nan")}, "bad value for lr")],
)  # fmt: skip
def test_bad_config_values_are_one_line_errors(config, expected, tmp_path):
    with pytest.raises(ConfigError, match=expected):
        _resolve(config=config, tmp_path=tmp_path)


def test_hub_weights_are_refused_where_models_are_not_timm_models(tmp_path):
    with pytest.raises(ConfigError, match="no hub weights"):
        _resolve({"weights": "hub"}, tmp_path=tmp_path)


def test_config_is_read_only_and_variants_are_copies(tmp_path):
    config = _resolve(tmp_path=tmp_path)
    with pytest.raises(TypeError):
        config["lr"] = 1.0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.core.lr = 1.0  # type: ignore[misc]
    scratch = config.replace(weights="/w.safetensors", cost_fn=3.0)
    assert scratch["cost_fn"] == 3.0 and config["cost_fn"] == 10.0
    assert config["weights"] == "none"


def test_generated_click_options_default_to_none_and_name_the_real_default():
    options = {o.name: o for o in click_options(RunConfig, "run", {"dropout": 0.2})}
    assert all(o.default is None for o in options.values())
    assert "(default 0.2)" in options["dropout"].help
    assert "--compare-scratch" in options["compare_scratch"].opts
    pretrain = {o.name for o in click_options(RunConfig, "pretrain")}
    assert "strategy" not in pretrain and "epochs" in pretrain


def test_a_plugin_offers_only_the_option_groups_its_models_support(tmp_path):
    class Detector(_Tabular):
        option_groups = frozenset({"lora"})

    options = {o.name for o in click_options(RunConfig, "run", groups=Detector.option_groups)}
    assert "lora_rank" in options and "prompt_tokens" not in options and "epsilon" not in options
    path = tmp_path / "config.yaml"
    path.write_text("prompt_tokens: 4\n")
    with pytest.raises(ConfigError, match="'prompt_tokens' does not apply to"):
        resolve_config(Detector(), {"data": "."}, path)
    config = resolve_config(Detector(), {"data": "."})
    assert "adversarial" not in config.to_dict() and config["adversarial"] is None


def test_an_older_config_with_defaults_of_options_not_offered_still_loads(tmp_path):
    class Ranker(_Tabular):
        option_groups = frozenset({"dropout"})

    path = tmp_path / "config.yaml"
    path.write_text("label_smoothing: 0.0\nprecise_bn: auto\ncache_features: auto\nlr: 0.01\n")
    config = resolve_config(Ranker(), {"data": "."}, path)
    assert config["lr"] == 0.01 and "label_smoothing" not in config.to_dict()
    path.write_text("label_smoothing: 0.1\n")
    with pytest.raises(ConfigError) as error:
        resolve_config(Ranker(), {"data": "."}, path)
    assert "'label_smoothing' does not apply to" in str(error.value)
    assert "remove label_smoothing:" in str(error.value)


@pytest.mark.parametrize(
    ("plugin", "absent", "present"),
    [
        ("recsys", ["label-smoothing", "precise-bn", "cache-features", "lora-rank", "epsilon"],
         ["dropout"]),
        ("fraud", ["label-smoothing", "precise-bn", "cache-features", "prompt-tokens"],
         ["dropout"]),
        ("driving", ["label-smoothing", "dropout", "cache-features", "shots"], ["precise-bn"]),
        ("medical", [], ["label-smoothing", "dropout", "precise-bn", "cache-features",
                         "lora-rank", "prompt-tokens", "shots", "epsilon"]),
    ],
)  # fmt: skip
def test_a_plugins_help_lists_only_the_core_options_that_apply(plugin, absent, present):
    from tl.cli.main import cli

    text = click.testing.CliRunner().invoke(cli, ["run", plugin, "--help"]).output
    assert all(f"--{name} " not in text for name in absent), text
    assert all(f"--{name} " in text for name in present), text
    strategy = " ".join(text.split("--strategy TEXT", 1)[1].split("(default")[0].split())
    assert ("lora" in strategy) == (plugin == "medical"), strategy


def test_a_strategy_the_plugin_does_not_offer_is_refused_before_data_loads():
    from tl.core.run_config import resolve_run_config

    class Ranker(_Tabular):
        option_groups = frozenset({"dropout"})

    with pytest.raises(ConfigError) as error:
        resolve_run_config(Ranker(), {"data": "/nowhere", "strategy": "lora"})
    assert "--strategy lora does not apply" in str(error.value)
    assert "linear, partial:N, full, gradual, llrd" in str(error.value)
    assert resolve_run_config(Ranker(), {"data": "/nowhere", "strategy": "partial:2"})


def test_pretrained_weights_default_to_auto_and_scratch_trains_full(tmp_path):
    from tl.core.run_config import resolve_run_config, scratch_config

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    plugin = _Tabular()
    transfer = resolve_run_config(plugin, {"data": "/nowhere", "weights": str(weights)})
    assert transfer["strategy"] == "auto" and transfer.to_dict()["strategy"] == "auto"
    assert scratch_config(transfer)["strategy"] == "full"
    assert scratch_config(transfer)["weights"] == "none"
    assert resolve_run_config(plugin, {"data": "/nowhere", "weights": "none"})["strategy"] == "full"
    named = resolve_run_config(plugin, {"data": "/n", "weights": str(weights), "strategy": "llrd"})
    assert named["strategy"] == "llrd" and scratch_config(named)["strategy"] == "llrd"


@pytest.mark.parametrize("plugin", ["fraud", "recsys", "driving"])
def test_plugins_whose_recipes_were_measured_with_full_keep_it(plugin):
    from tl.core.registry import load_plugin

    assert load_plugin(plugin).defaults["strategy"] == "full"
