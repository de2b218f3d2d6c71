"""Connection settings: precedence flags > env > profile, PROXMOX_* fallbacks, secret sources
(command without a shell, file), config file permissions, and secrets kept out of sight."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from pvetool.errors import ConfigError
from pvetool.settings import (
    HostPort,
    PasswordAuth,
    Secret,
    Settings,
    TokenAuth,
    default_config_path,
    load_settings,
    normalize_fingerprint,
    run_secret_command,
)

SECRET = "0d9a7c1e-52b4-4f7e-9a11-3c2b1d0e9f8a"
TOKEN = f"root@pam!pvetool={SECRET}"
FP = (  # node1 of nodes_capture.json
    "80:D4:F2:DF:64:95:CD:8D:A0:82:82:AC:48:BA:C0:7A:"
    "1B:6B:87:8B:FE:B9:83:1C:95:4E:79:58:77:99:69:F5"
)


def write_config(tmp_path: Path, data: dict[str, Any], mode: int = 0o600) -> Path:
    path = tmp_path / "pvetool" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    path.chmod(mode)
    return path


def fail_if_run(argv: Sequence[str], what: str) -> str:
    raise AssertionError(f"{what} should not have been run")


# -- precedence -------------------------------------------------------------------------------


def test_env_token_and_hosts(tmp_path: Path) -> None:
    env = {"PVETOOL_HOST": "pve1, pve2:8443,[2001:db8::1]:8006", "PVETOOL_TOKEN": TOKEN}
    settings = load_settings(env=env, config_path=tmp_path / "none.yaml")
    assert settings.hosts == (
        HostPort("pve1", 8006),
        HostPort("pve2", 8443),
        HostPort("2001:db8::1", 8006),
    )
    assert str(settings.hosts[2]) == "[2001:db8::1]:8006"
    assert isinstance(settings.auth, TokenAuth)
    assert settings.auth.token_id == "root@pam!pvetool"
    assert settings.auth.secret.reveal() == SECRET
    assert settings.verify is True and settings.fingerprints == ()
    assert (
        settings.sources["host"] == "PVETOOL_HOST" and settings.sources["auth"] == "PVETOOL_TOKEN"
    )


def test_precedence_flags_over_env_over_profile(tmp_path: Path) -> None:
    token_file = tmp_path / "flag.token"
    token_file.write_text(f"ops@pve!flag={SECRET}\n")
    token_file.chmod(0o600)
    config = write_config(
        tmp_path,
        {
            "default_profile": "prod",
            "profiles": {
                "prod": {
                    "host": ["prof1", "prof2"],
                    "token_command": ["false"],
                    "verify": False,
                    "fingerprint": FP,
                    "timeout_s": 12,
                    "retries": 2,
                },
                "lab": {"host": "lab1", "token": f"lab@pve!t={SECRET}"},
            },
        },
    )
    env = {"PVETOOL_HOST": "envhost", "PVETOOL_TOKEN": TOKEN, "PVETOOL_VERIFY": "true"}

    # profile only
    s = load_settings(env={"PVETOOL_PROFILE": "lab"}, config_path=config, run_command=fail_if_run)
    assert s.profile == "lab" and s.hosts == (HostPort("lab1"),)
    assert isinstance(s.auth, TokenAuth) and s.auth.user == "lab@pve"

    # env beats profile (and the profile's token_command is not even run)
    s = load_settings(env=env, config_path=config, run_command=fail_if_run)
    assert s.profile == "prod"
    assert s.hosts == (HostPort("envhost"),)
    assert isinstance(s.auth, TokenAuth) and s.auth.user == "root@pam"
    assert s.verify is True  # PVETOOL_VERIFY beats the profile's false
    assert s.fingerprints == (FP,)  # not overridden: taken from the profile
    assert s.request_timeout_s == 12 and s.retry.attempts == 2

    # flags beat env
    s = load_settings(
        host="flaghost:9000",
        profile="lab",
        token_file=token_file,
        env=env,
        config_path=config,
        run_command=fail_if_run,
    )
    assert s.profile == "lab" and s.hosts == (HostPort("flaghost", 9000),)
    assert isinstance(s.auth, TokenAuth) and s.auth.token_id == "ops@pve!flag"
    assert s.sources == {
        "profile": "--profile",
        "host": "--host",
        "auth": "--token-file",
        "verify": "default",  # an explicit --profile wins over PVETOOL_VERIFY (issue 13)
    }


def test_an_explicit_profile_wins_over_the_environment_and_says_so(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, {"profiles": {"prod": {"host": "prod1", "token": f"prod@pve!t={SECRET}"}}}
    )
    env = {"PVETOOL_HOST": "lab1", "PVETOOL_TOKEN": TOKEN, "PVETOOL_VERIFY": "false"}
    s = load_settings(profile="prod", env=env, config_path=config, run_command=fail_if_run)
    assert s.hosts == (HostPort("prod1"),)
    assert isinstance(s.auth, TokenAuth) and s.auth.user == "prod@pve"
    assert s.verify is True
    assert s.warnings == (
        "--profile prod was given, so PVETOOL_HOST, PVETOOL_TOKEN, PVETOOL_VERIFY from the "
        "environment are ignored",
    )
    assert SECRET not in " ".join(s.warnings)
    # PVETOOL_PROFILE is not an explicit choice on the command line: the environment wins
    s = load_settings(
        env={**env, "PVETOOL_PROFILE": "prod"}, config_path=config, run_command=fail_if_run
    )
    assert s.hosts == (HostPort("lab1"),)


def test_verification_turned_off_warns(tmp_path: Path) -> None:
    env = {"PVETOOL_HOST": "h", "PVETOOL_TOKEN": TOKEN, "PVETOOL_VERIFY": "false"}
    s = load_settings(env=env, config_path=tmp_path / "none.yaml")
    assert s.verify is False
    [warning] = s.warnings
    assert "TLS certificate verification is off (PVETOOL_VERIFY)" in warning
    assert "PVETOOL_FINGERPRINT" in warning and "PVETOOL_VERIFY=/path/to/pve-root-ca.pem" in warning
    pinned = load_settings(
        env={**env, "PVETOOL_FINGERPRINT": FP}, config_path=tmp_path / "none.yaml"
    )
    assert pinned.warnings == ()  # a pinned certificate is verified


def test_profile_token_command_runs_without_a_shell(tmp_path: Path) -> None:
    # With a shell, $HOME would expand and ';' would end the command.
    config = write_config(
        tmp_path,
        {"profiles": {"p": {"host": "pve1", "token_command": "echo 'root@pam!ci=ab$HOME;cd'"}}},
    )
    s = load_settings(profile="p", env={}, config_path=config)
    assert isinstance(s.auth, TokenAuth) and s.auth.secret.reveal() == "ab$HOME;cd"


def test_secret_command_is_called_with_shell_false(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.update(kwargs, argv=argv)
        return subprocess.CompletedProcess(argv, 0, stdout="s3cret-value\nsecond line\n")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert run_secret_command(["pass", "show", "pve"], "test") == "s3cret-value"
    assert seen["shell"] is False and seen["argv"] == ["pass", "show", "pve"]
    assert seen["stdin"] == subprocess.DEVNULL


def test_password_command_and_user(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {
            "profiles": {
                "p": {
                    "host": "pve1",
                    "user": "admin@pve",
                    "password_command": [sys.executable, "-c", "print('pw-from-command')"],
                }
            }
        },
    )
    s = load_settings(profile="p", env={}, config_path=config)
    assert isinstance(s.auth, PasswordAuth)
    assert s.auth.user == "admin@pve" and s.auth.password.reveal() == "pw-from-command"


def test_failing_secret_command_does_not_leak_its_output(tmp_path: Path) -> None:
    script = "import sys; print('leaked-" + SECRET + "'); sys.exit(3)"
    config = write_config(
        tmp_path,
        {"profiles": {"p": {"host": "pve1", "token_command": [sys.executable, "-c", script]}}},
    )
    with pytest.raises(ConfigError) as info:
        load_settings(profile="p", env={}, config_path=config)
    assert "exit status 3" in str(info.value) and SECRET not in str(info.value)
    with pytest.raises(ConfigError, match="was not found"):
        run_secret_command(["/nonexistent/pass"], "token_command")


def test_token_file_full_token_or_bare_secret(tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.write_text(TOKEN + "\n")
    bare = tmp_path / "bare"
    bare.write_text(SECRET)
    full.chmod(0o600)
    bare.chmod(0o600)
    config = write_config(
        tmp_path,
        {
            "profiles": {
                "full": {"host": "pve1", "token_file": str(full)},
                "bare": {"host": "pve1", "token_file": str(bare), "token_id": "svc@pve!drain"},
            }
        },
    )
    s = load_settings(profile="full", env={}, config_path=config)
    assert isinstance(s.auth, TokenAuth) and s.auth.secret.reveal() == SECRET
    s = load_settings(profile="bare", env={}, config_path=config)
    assert isinstance(s.auth, TokenAuth)
    assert s.auth.token_id == "svc@pve!drain" and s.auth.secret.reveal() == SECRET


# -- PROXMOX_* fallbacks ----------------------------------------------------------------------


def test_proxmox_names_used_when_pvetool_names_unset(tmp_path: Path) -> None:
    none = tmp_path / "none.yaml"
    env = {
        "PROXMOX_HOST": "https://pve9.example.com:8006/",
        "PROXMOX_TOKEN_ID": "root@pam!ansible",
        "PROXMOX_TOKEN_SECRET": SECRET,
    }
    s = load_settings(env=env, config_path=none)
    assert s.hosts == (HostPort("pve9.example.com"),)
    assert isinstance(s.auth, TokenAuth) and s.auth.token_id == "root@pam!ansible"

    env = {
        "PROXMOX_HOST": "pve9",
        "PROXMOX_USER": "ops@pve",
        "PROXMOX_TOKEN_ID": "ansible",
        "PROXMOX_TOKEN_SECRET": SECRET,
    }
    s = load_settings(env=env, config_path=none)
    assert isinstance(s.auth, TokenAuth) and s.auth.token_id == "ops@pve!ansible"

    env = {"PROXMOX_HOST": "pve9", "PROXMOX_USER": "ops@pve", "PROXMOX_PASSWORD": "pw123456"}
    s = load_settings(env=env, config_path=none)
    assert isinstance(s.auth, PasswordAuth) and s.auth.user == "ops@pve"


def test_pvetool_names_win_over_proxmox_names(tmp_path: Path) -> None:
    env = {
        "PVETOOL_HOST": "mine",
        "PVETOOL_TOKEN": TOKEN,
        "PROXMOX_HOST": "theirs",
        "PROXMOX_USER": "x@pve",
        "PROXMOX_PASSWORD": "pw123456",
    }
    s = load_settings(env=env, config_path=tmp_path / "none.yaml")
    assert s.hosts == (HostPort("mine"),) and isinstance(s.auth, TokenAuth)


# -- TLS --------------------------------------------------------------------------------------


def test_fingerprint_normalised_and_disables_ca_check_unless_asked(tmp_path: Path) -> None:
    lower = FP.replace(":", "").lower()
    s = load_settings(
        env={"PVETOOL_HOST": "pve1", "PVETOOL_TOKEN": TOKEN, "PVETOOL_FINGERPRINT": lower},
        config_path=tmp_path / "none.yaml",
    )
    assert s.fingerprints == (FP,) and s.verify is False
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s = load_settings(
        env={
            "PVETOOL_HOST": "pve1",
            "PVETOOL_TOKEN": TOKEN,
            "PVETOOL_FINGERPRINT": FP,
            "PVETOOL_VERIFY": str(ca),
        },
        config_path=tmp_path / "none.yaml",
    )
    assert s.verify == str(ca) and s.fingerprint_for(0) == FP


def test_fingerprints_as_pve_shows_them_are_accepted() -> None:
    nodes = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "data/fixtures/nodes_capture.json").read_text()
    )["data"]
    for node in nodes:
        assert normalize_fingerprint(node["ssl_fingerprint"]) == node["ssl_fingerprint"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PVETOOL_TOKEN": TOKEN}, "no PVE host"),
        ({"PVETOOL_HOST": "pve1"}, "no credentials"),
        ({"PVETOOL_HOST": "pve1", "PVETOOL_TOKEN": SECRET}, "user@realm!tokenid=secret"),
        ({"PVETOOL_HOST": "pve1", "PVETOOL_USER": "root@pam"}, "PVETOOL_PASSWORD is unset"),
        ({"PVETOOL_HOST": "pve1:99999", "PVETOOL_TOKEN": TOKEN}, "invalid port"),
        ({"PVETOOL_HOST": "http://pve1", "PVETOOL_TOKEN": TOKEN}, "not an https address"),
        (
            {"PVETOOL_HOST": "pve1", "PVETOOL_TOKEN": TOKEN, "PVETOOL_FINGERPRINT": "AB:CD"},
            "SHA-256",
        ),
        (
            {
                "PVETOOL_HOST": "pve1,pve2,pve3",
                "PVETOOL_TOKEN": TOKEN,
                "PVETOOL_FINGERPRINT": f"{FP},{FP}",
            },
            "one per host",
        ),
        (
            {"PVETOOL_HOST": "pve1", "PVETOOL_TOKEN": TOKEN, "PVETOOL_VERIFY": "/no/such/ca.pem"},
            "does not exist",
        ),
        (
            {"PVETOOL_HOST": "pve1", "PVETOOL_TOKEN": TOKEN, "PVETOOL_PROFILE": "x"},
            "no config file",
        ),
    ],
)
def test_configuration_errors(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(env=env, config_path=tmp_path / "none.yaml")
    assert SECRET not in str(info.value)
    assert info.value.exit_code == 2


def test_config_file_errors(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"profiles": {"p": {"host": "pve1", "tokn": "x"}}})
    with pytest.raises(ConfigError, match="unknown key"):
        load_settings(profile="p", env={}, config_path=config)
    config = write_config(tmp_path, {"profiles": {"p": {"host": "pve1"}}})
    with pytest.raises(ConfigError, match="not defined"):
        load_settings(profile="q", env={}, config_path=config)
    config.write_text("profiles: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(profile="p", env={}, config_path=config)


# -- permissions and secrecy ------------------------------------------------------------------


def test_warns_when_config_is_readable_or_writable_by_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = {"profiles": {"p": {"host": "pve1", "token": TOKEN}}}
    caplog.set_level(logging.WARNING, logger="pvetool.settings")
    load_settings(profile="p", env={}, config_path=write_config(tmp_path, data, 0o600))
    assert not caplog.records

    load_settings(profile="p", env={}, config_path=write_config(tmp_path, data, 0o644))
    assert any("readable by other users" in r.getMessage() for r in caplog.records)
    caplog.clear()
    load_settings(profile="p", env={}, config_path=write_config(tmp_path, data, 0o666))
    assert any("writable by other users" in r.getMessage() for r in caplog.records)
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_repr_and_str_hide_secrets(tmp_path: Path) -> None:
    s = load_settings(
        env={"PVETOOL_HOST": "pve1", "PVETOOL_TOKEN": TOKEN}, config_path=tmp_path / "n.yaml"
    )
    assert SECRET not in repr(s) and SECRET not in str(s) and "***" in repr(s)
    p = Settings(hosts=(HostPort("pve1"),), auth=PasswordAuth("a@pve", Secret("hunter2-long")))
    assert "hunter2" not in repr(p) and "hunter2" not in repr(p.auth)
    assert str(Secret("abc")) == "***" and Secret("abc") == Secret("abc")
    assert p.secret_values() == ("hunter2-long",)


def test_default_config_path_follows_xdg(tmp_path: Path) -> None:
    assert default_config_path({"XDG_CONFIG_HOME": "/x"}) == Path("/x/pvetool/config.yaml")
    assert default_config_path({"HOME": "/home/a"}) == Path("/home/a/.config/pvetool/config.yaml")


# -- bounded reads and ranges (issue 12, finding 6) --------------------------------------------


def test_token_files_that_are_no_small_regular_file_are_refused(tmp_path: Path) -> None:
    env = {"PVETOOL_HOST": "pve1"}
    fifo = tmp_path / "fifo"

    os.mkfifo(fifo)
    big = tmp_path / "big"
    big.write_text(TOKEN + "\n" + "x" * 70_000)
    cases = [
        (fifo, "is a FIFO (named pipe), not a regular file"),
        (tmp_path, "is a directory, not a regular file"),
        (big, "files larger than 64 KiB are refused"),
    ]
    if Path("/dev/zero").exists():
        cases.append((Path("/dev/zero"), "is a character device, not a regular file"))
    for path, words in cases:
        with pytest.raises(ConfigError) as info:
            load_settings(env=env, token_file=path, config_path=tmp_path / "none.yaml")
        assert words in str(info.value) and "--token-file" in str(info.value)


def test_a_config_file_that_is_too_large(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"profiles": {"p": {"host": "pve1"}}})
    path.write_text("profiles: {}\n" + "#" * (1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match="files larger than 1 MiB are refused"):
        load_settings(env={"PVETOOL_TOKEN": TOKEN}, config_path=path)


def test_a_ca_file_must_be_a_regular_file(tmp_path: Path) -> None:
    env = {"PVETOOL_HOST": "pve1", "PVETOOL_TOKEN": TOKEN, "PVETOOL_VERIFY": str(tmp_path)}
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_settings(env=env, config_path=tmp_path / "none.yaml")


@pytest.mark.parametrize(
    ("profile", "words"),
    [
        ({"timeout_s": 0}, "timeout_s must be a number of seconds above 0 and at most 3600"),
        ({"timeout_s": 1e300}, "at most 3600"),
        ({"timeout_s": float("nan")}, "at most 3600"),
        ({"retries": 0}, "retries must be a whole number of attempts from 1 to 100"),
        ({"retries": 10**20}, "from 1 to 100"),
    ],
)
def test_timeouts_and_retries_have_ranges(
    tmp_path: Path, profile: dict[str, Any], words: str
) -> None:
    path = write_config(tmp_path, {"profiles": {"p": {"host": "pve1", **profile}}})
    with pytest.raises(ConfigError) as info:
        load_settings(env={"PVETOOL_TOKEN": TOKEN, "PVETOOL_PROFILE": "p"}, config_path=path)
    assert words in str(info.value)
