"""Genesis and node settings: validation gives one clear line, hashes are stable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from node.base.settings import ConfigError, NodeSettings, load_settings
from node.training.genesis import Genesis, GenesisError, load_genesis, parse_genesis, render_genesis


def test_render_parse_roundtrip_keeps_network_id() -> None:
    g = Genesis.fresh(network={"name": "lab", "bootstrap": ["127.0.0.1:7000"]})
    text = render_genesis(g)
    assert g.network_id_hex in text
    again = parse_genesis(text)
    assert again == g
    assert again.network_id == g.network_id


def test_every_setting_is_documented_inline() -> None:
    text = render_genesis(Genesis())
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if " = " in line and not line.startswith("#"):
            assert lines[i - 1].startswith("#"), f"undocumented setting: {line}"


def test_network_id_ignores_comments_but_not_values() -> None:
    g = Genesis.fresh()
    text = render_genesis(g)
    commented = "# an operator's note\n" + text.replace("# ==", "#  ==")
    assert parse_genesis(commented).network_id == g.network_id
    changed = text.replace("alpha = 0.5", "alpha = 0.6")
    assert parse_genesis(changed).network_id != g.network_id


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[network]\nname = 1", "network.name"),
        ("[network]\nfoo = 1", "network.foo: unknown key"),
        ("[bogus]\nx = 1", "bogus: unknown key"),
        ("x = ", "invalid TOML"),
        ("[task]\nalpha = -1", "task.alpha"),
        ('[network]\nbootstrap = ["nope"]', "bad address 'nope'"),
        ("[network]\npow_difficulty = 99", "network.pow_difficulty"),
        ('[task]\nname = "cifar"', "task.name"),
        ('[task]\nname = "digits"\nmodel = "cnn"', "cnn"),
    ],
)
def test_bad_genesis_one_line(text: str, expected: str) -> None:
    with pytest.raises(GenesisError) as info:
        parse_genesis(text, source="g.toml")
    message = str(info.value)
    assert expected in message
    assert message.startswith("g.toml: ")
    assert "\n" not in message


def test_load_genesis_file_errors(tmp_path: Path) -> None:
    with pytest.raises(GenesisError, match="no such genesis file"):
        load_genesis(tmp_path / "missing.toml")
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(GenesisError):
        load_genesis(bad)


def test_settings_validation(tmp_path: Path) -> None:
    assert NodeSettings().listen == "127.0.0.1:7420"
    with pytest.raises(ConfigError, match="loopback or a unix socket"):
        load_settings(None, {"admin": "0.0.0.0:9000"})
    with pytest.raises(ConfigError, match="listen"):
        load_settings(None, {"listen": "nohost"})
    cfg = tmp_path / "node.toml"
    cfg.write_text('listen = "127.0.0.1:9001"\nunknown = 3\n')
    with pytest.raises(ConfigError, match="unknown: unknown key"):
        load_settings(cfg, {})
    cfg.write_text('listen = "127.0.0.1:9001"\n')
    assert load_settings(cfg, {"listen": None}).listen == "127.0.0.1:9001"
    assert load_settings(cfg, {"listen": "127.0.0.1:9002"}).listen == "127.0.0.1:9002"
    cfg.write_text("listen = [")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(cfg, {})


def test_advertise_required_for_wildcard_listen() -> None:
    s = NodeSettings(listen="0.0.0.0:7000")
    with pytest.raises(ConfigError, match="--advertise"):
        s.advertised_address(7000)
    assert (
        NodeSettings(listen="0.0.0.0:7000", advertise="10.1.2.3:7000").advertised_address(7000)
        == "10.1.2.3:7000"
    )


def test_rule_names_match_the_aggregation_registry() -> None:
    from aggregation import RULES
    from node.training.genesis import RULE_NAMES

    assert set(RULES) == RULE_NAMES


def test_reading_a_genesis_with_a_rule_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from node.training.genesis import Genesis\n"
        "Genesis.model_validate({'network': {'name': 'x', 'seed': 1},"
        " 'aggregation': {'rule': 'nnm+krum', 'f': 1}})\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_privacy_enabled_without_noise_is_refused() -> None:
    with pytest.raises(ValueError, match="noise_multiplier must be > 0"):
        Genesis.model_validate({"privacy": {"enabled": True, "noise_multiplier": 0}})
    # Disabled privacy may carry any multiplier.
    Genesis.model_validate({"privacy": {"enabled": False, "noise_multiplier": 0}})


def test_rule_under_rounds_is_refused_and_the_effective_spec_is_validated() -> None:
    with pytest.raises(ValueError, match=r"rounds\.aggregation is set from \[aggregation\]"):
        Genesis.model_validate({"rounds": {"aggregation": "median"}})
    # Sample weighting with a robust rule: refused when the genesis is read, not at start.
    with pytest.raises(ValueError, match="weight_by_examples"):
        Genesis.model_validate(
            {"aggregation": {"rule": "median"}, "rounds": {"weight_by_examples": True}}
        )
    g = Genesis.model_validate(
        {"aggregation": {"rule": "trimmed_mean", "f": 1, "variance_correction": True}}
    )
    spec = g.round_spec()
    assert (spec.aggregation, spec.aggregation_f, spec.variance_correction) == (
        "trimmed_mean",
        1,
        True,
    )
    # A rendered file reads back to the same network (the engine copies are not written).
    assert parse_genesis(render_genesis(g)).network_id == g.network_id


@pytest.mark.parametrize(
    ("sections", "match"),
    [
        # Record-level budget with an opaque Flower client: the node cannot account for it.
        (
            {
                "learner": {"kind": "flower", "flower_client": "m:c"},
                "privacy": {"sample_epsilon": 3.0},
            },
            r"privacy\.sample_epsilon cannot be kept with learner 'flower'",
        ),
        # A record-level budget without a record-level mechanism.
        ({"privacy": {"sample_epsilon": 3.0}}, r"privacy\.sample_epsilon needs a record-level"),
        (
            {"learner": {"kind": "spsa"}, "privacy": {"sample_epsilon": 3.0}},
            r"learner\.dp_zo = true",
        ),
        # ... or with one that adds no noise.
        (
            {
                "learner": {"dp_sgd": True, "dp_sgd_noise_multiplier": 0.0},
                "privacy": {"sample_epsilon": 3.0},
            },
            r"learner\.dp_sgd_noise_multiplier > 0",
        ),
        # Example counts would leave the node un-noised.
        (
            {"privacy": {"enabled": True}, "rounds": {"weight_by_examples": True}},
            r"rounds\.weight_by_examples cannot be used with differential privacy",
        ),
        (
            {"learner": {"dp_sgd": True}, "rounds": {"weight_by_examples": True}},
            r"rounds\.weight_by_examples cannot be used with differential privacy",
        ),
        # Sample-level DP-SGD needs per-example gradients; spsa has DP-ZO instead.
        ({"learner": {"kind": "spsa", "dp_sgd": True}}, "for spsa use dp_zo"),
        ({"learner": {"kind": "flower", "flower_client": "m:c", "dp_sgd": True}}, "dp_sgd"),
        ({"learner": {"kind": "sgd", "dp_zo": True}}, "dp_zo is only available"),
    ],
)
def test_privacy_the_node_cannot_keep_is_refused_naming_the_key(
    sections: dict[str, Any], match: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=match):
        Genesis.model_validate(sections)
    # The same refusal reaches an operator as one line from the file.
    text = "\n".join(
        f"[{name}]\n" + "\n".join(f"{k} = {_toml(v)}" for k, v in body.items())
        for name, body in sections.items()
    )
    with pytest.raises(GenesisError) as info:
        parse_genesis(text, source="net.toml")
    assert "\n" not in str(info.value) and str(info.value).startswith("net.toml:")


def _toml(value: Any) -> str:
    import tomli_w

    return tomli_w.dumps({"v": value}).split(" = ", 1)[1].strip()


def test_record_level_settings_are_accepted_where_the_node_keeps_them() -> None:
    g = Genesis.model_validate(
        {"learner": {"dp_sgd": True}, "privacy": {"sample_epsilon": 3.0, "sample_delta": 1e-6}}
    )
    assert g.privacy.sample_epsilon == 3.0
    z = Genesis.model_validate({"learner": {"kind": "spsa", "dp_zo": True}})
    assert z.learner.dp_zo and z.privacy.sample_epsilon is None
    # Node-level privacy with an opaque Flower client is fine: the node noises its vector.
    Genesis.model_validate(
        {"learner": {"kind": "flower", "flower_client": "m:c"}, "privacy": {"enabled": True}}
    )


def test_start_wait_default_grows_with_declared_size_and_keeps_old_network_ids() -> None:
    g3 = Genesis.model_validate({"task": {"num_nodes": 3}, "rounds": {"round_timeout": 3.0}})
    assert g3.start_wait_s == 3.0 + 20.0 * 2
    assert Genesis.model_validate({"task": {"num_nodes": 1}}).start_wait_s == 30.0
    assert Genesis.model_validate({"task": {"num_nodes": 200}}).start_wait_s == 600.0
    # Unset, the key is not hashed: a genesis written before it existed keeps its id.
    assert b"start_wait" not in g3.canonical_json()
    set_ = Genesis.model_validate(
        {"task": {"num_nodes": 3}, "rounds": {"round_timeout": 3.0, "start_wait": 300.0}}
    )
    assert set_.start_wait_s == 300.0
    assert set_.network_id != g3.network_id
    assert parse_genesis(render_genesis(set_)).network_id == set_.network_id
    assert parse_genesis(render_genesis(g3)).network_id == g3.network_id
    with pytest.raises(ValueError, match="start_wait"):
        Genesis.model_validate({"rounds": {"start_wait": -1.0}})
