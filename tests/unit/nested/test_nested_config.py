"""config.toml: the pinned ISO, and every configuration mistake reported at once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import CONFIG, NESTED


def test_the_pinned_iso_is_complete(pvelab: ModuleType) -> None:
    cfg = pvelab.load_config(CONFIG)
    assert re.fullmatch(r"\d+\.\d+-\d+", cfg.iso_version)
    assert cfg.iso_version.startswith("9.")
    assert cfg.iso_file == f"proxmox-ve_{cfg.iso_version}.iso"
    assert cfg.iso_url.endswith("/" + cfg.iso_file)
    assert cfg.checksum_problem() is None
    assert re.fullmatch(r"[0-9a-f]{64}", cfg.keyring_sha256)
    assert cfg.partition_label == "PROXMOX-AIS"


def test_overrides_win(pvelab: ModuleType, tmp_path: Path) -> None:
    cfg = pvelab.load_config(
        CONFIG,
        iso_url="https://mirror.invalid/x.iso",
        iso_sha256="A" * 64,
        work_dir=str(tmp_path / "w"),
        cache_dir=str(tmp_path / "c"),
    )
    assert cfg.iso_url == "https://mirror.invalid/x.iso"
    assert cfg.iso_sha256 == "a" * 64
    assert cfg.work_dir == tmp_path / "w" and cfg.cache_dir == tmp_path / "c"
    assert cfg.nfs_dir == tmp_path / "w" / "nfs"


def test_every_problem_is_reported_at_once(pvelab: ModuleType, tmp_path: Path) -> None:
    text = CONFIG.read_text()
    text = text.replace('"10.251.0.12"', '"192.168.1.5"')
    text = text.replace('name = "pve3"', 'name = "pve1"')
    text = text.replace('node = "pve2"\nkind = "local-disk"', 'node = "pve9"\nkind = "floppy"')
    text = text.replace('cidr = "10.251.0.0/24"', 'cidr = "10.251.0.0/24"', 1)
    text = text.replace("memory_mib = 4096", 'memory_mib = "lots"')
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(pvelab.ConfigError) as caught:
        pvelab.load_config(path)
    message = str(caught.value)
    for expected in (
        "192.168.1.5 is outside network.cidr",
        "duplicate name pve1",
        "'pve9' is not one of the nodes",
        "'floppy' is not one of",
        "nodes.memory_mib: expected int",
    ):
        assert expected in message, message


def test_invalid_toml_is_a_config_error(pvelab: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[iso\n")
    with pytest.raises(pvelab.ConfigError, match="not valid TOML"):
        pvelab.load_config(path)


def test_config_value_command(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(NESTED / "pvelab.py"), "config-value", "iso.version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0 and run.stdout.strip() == "9.0-1"
    bad = subprocess.run(
        [sys.executable, str(NESTED / "pvelab.py"), "config-value", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "unknown key" in bad.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(NESTED / "up"), "--no-such-flag"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
