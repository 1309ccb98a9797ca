"""Reading a process's place in a torchrun / accelerate launch from the environment."""

from __future__ import annotations

import pytest

from exposure_env.errors import ConfigError
from exposure_env.launch import LaunchPosition, launch_position


def test_without_a_launcher_the_process_is_rank_zero_of_one():
    position = launch_position({})
    assert position == LaunchPosition(0, 1, 0) and position.is_main and not position.launched


def test_a_launched_process_reads_its_rank_world_and_local_rank():
    position = launch_position({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert position == LaunchPosition(3, 4, 1) and not position.is_main and position.launched


@pytest.mark.parametrize("environ", [{"RANK": "x", "WORLD_SIZE": "2"}, {"RANK": "2", "WORLD_SIZE": "2"},
                                     {"WORLD_SIZE": "0"}, {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "-1"}])
def test_malformed_launch_variables_are_config_errors_naming_them(environ):
    with pytest.raises(ConfigError, match="RANK|WORLD_SIZE"):
        launch_position(environ)
