"""Config errors name the key's path and the reason; valid files become dataclasses."""

import pytest

from anabranch.daemon.config import ConfigError, load, loads


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        loads(text, source="t.toml")
    return caught.value.errors


def test_an_empty_file_gives_the_packaged_defaults():
    config = loads("")
    assert config.api.control == "ipc:///run/anabranch/control.sock"
    assert config.daemon.tick_s == 1.0 and config.interfaces == ()


def test_interfaces_become_typed_settings():
    config = loads('[interfaces.wan0]\nrole = "wan"\nup_mbit = 20\ndown_mbit = 100.5\n'
                   '[interfaces.lan0]\nrole = "lan"\n')
    assert config.interface("wan0").up_mbit == 20
    assert config.interface("lan0").role == "lan"


def test_a_bad_value_names_the_key_and_shows_the_value():
    assert errors_of('[interfaces.wan0]\nrole = "wan"\nup_mbit = "fast"\n') == [
        't.toml: interfaces.wan0.up_mbit: must be a positive number, got "fast"']


def test_every_problem_is_reported_at_once():
    errors = errors_of('[daemon]\ntick_s = 0\nflows = 3\n[webui]\nlisten = "anywhere"\n')
    assert errors == ["t.toml: daemon.tick_s: must be at least 0.1, got 0",
                      "t.toml: daemon.flows: unknown key",
                      't.toml: webui.listen: must be HOST:PORT, got "anywhere"']


def test_the_realtime_priority_is_a_sched_rr_priority_or_0():
    assert loads("").daemon.realtime_priority == 1
    assert loads("[daemon]\nrealtime_priority = 0\n").daemon.realtime_priority == 0
    assert errors_of("[daemon]\nrealtime_priority = 100\n") == [
        "t.toml: daemon.realtime_priority: must be at most 99, got 100"]


def test_following_nat_is_on_unless_turned_off_with_a_boolean():
    assert loads("").daemon.follow_nat is True
    assert loads("[daemon]\nfollow_nat = false\n").daemon.follow_nat is False
    assert errors_of("[daemon]\nfollow_nat = \"no\"\n") == ["t.toml: daemon.follow_nat: must be true or false, got \"no\""]


def test_an_interface_needs_a_role():
    assert errors_of("[interfaces.wan0]\nup_mbit = 5\n") == [
        't.toml: interfaces.wan0.role: missing; must be "wan" or "lan"']


def test_a_wrong_role_lists_the_choices():
    assert errors_of('[interfaces.eth0]\nrole = "dmz"\n') == [
        't.toml: interfaces.eth0.role: must be one of "wan", "lan", got "dmz"']


def test_unknown_sections_and_bad_interface_names_are_errors():
    errors = errors_of('[shapes]\nx = 1\n[interfaces."a-very-long-interface-name"]\nrole = "wan"\n')
    assert "t.toml: interfaces.a-very-long-interface-name: not a valid interface name" in errors[0]
    assert errors[1] == "t.toml: shapes: unknown key"


def test_tcp_endpoints_are_refused_without_curve():
    assert "needs CURVE keys" in errors_of('[api]\ncontrol = "tcp://0.0.0.0:5555"\n')[0]


def test_booleans_are_not_numbers():
    assert errors_of("[daemon]\nflow_map_size = true\n") == [
        "t.toml: daemon.flow_map_size: must be a whole number, got True"]


def test_broken_toml_and_missing_files_are_clear(tmp_path):
    assert "not valid TOML" in errors_of("[daemon\n")[0]
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "absent.toml")


def test_the_readme_example_configuration_is_valid():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = text.index("```toml\n[daemon]") + len("```toml\n")
    parsed = loads(text[start:text.index("```", start)], "README.md")
    assert parsed.controller.classify.rules[0].id == "cameras"
    assert parsed.controller.usage.quotas[0].per_host is True


def test_controller_errors_name_their_key():
    with pytest.raises(ConfigError) as err:
        loads('[controller.classify]\ndefault_class = "fast"\n[controller.alerts.rules.x]\nop = ">"\n', "t.toml")
    text = str(err.value)
    assert "t.toml: controller.classify.default_class" in text and "controller.alerts.rules.x.metric: missing" in text
