"""The [shaping] section of the configuration."""

from __future__ import annotations

import pytest

from anabranch.daemon import config


def test_shaping_defaults_remove_on_stop():
    cfg = config.loads("")
    assert cfg.shaping.on_stop == "remove"
    assert cfg.shaping.hysteresis == 0.05


def test_on_stop_keep_is_accepted():
    assert config.loads('[shaping]\non_stop = "keep"\n').shaping.on_stop == "keep"


@pytest.mark.parametrize("text, message", [
    ('[shaping]\non_stop = "pause"\n', 'shaping.on_stop: must be one of "remove", "keep", got "pause"'),
    ('[shaping]\nhysteresis = 2\n', "shaping.hysteresis: must be at most 0.5, got 2"),
    ('[shaping]\nspeed = 1\n', "shaping.speed: unknown key"),
])
def test_bad_shaping_values_name_the_key_and_the_reason(text, message):
    with pytest.raises(config.ConfigError) as caught:
        config.loads(text)
    assert message in str(caught.value)
