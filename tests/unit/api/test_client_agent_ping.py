"""`PveClient.agent_ping` against the emulator: True only for running VMs with the agent on."""

from __future__ import annotations

from pvetool.api import PveClient
from pvetool.settings import load_settings
from tests.emu import start


def test_agent_ping() -> None:
    with start("behaviour.yaml") as emu:
        client = PveClient(load_settings(env=emu.env(), config_path=None))
        try:
            assert client.agent_ping("pve1", 101) is True  # running, agent enabled
            assert client.agent_ping("pve1", 102) is False  # running, no agent
            assert client.agent_ping("pve2", 105) is False  # stopped
        finally:
            client.close()
