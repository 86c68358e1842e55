"""``venue.credentials_file``: a 0600 KEY=VALUE file a process (a restarted venue actor) reads its Binance keys from;
errors name the file and the line, never a value."""

from __future__ import annotations

import pytest

from veloz_actors._exceptions import ConfigError
from veloz_actors.config import parse_engine_config
from veloz_actors.venues.binance.auth import Credentials, CredentialsRef, read_env_file

KEY = "fileKey" + "A" * 57
SECRET = "file-secret-" + "B" * 52


def _write(path, text: str, mode: int = 0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_file_wins_over_the_environment_and_takes_export_quotes_and_comments(tmp_path):
    path = _write(tmp_path / "k.env", f"# keys\nexport BINANCE_API_KEY='{KEY}'\n\nBINANCE_API_SECRET=\"{SECRET}\"\n")
    assert read_env_file(path) == {"BINANCE_API_KEY": KEY, "BINANCE_API_SECRET": SECRET}
    creds = CredentialsRef(env_file=str(path)).load({"BINANCE_API_KEY": "other" + "C" * 59})
    assert creds.api_key == KEY
    assert SECRET not in repr(creds) and KEY not in repr(creds)


def test_a_file_others_can_read_is_refused(tmp_path):
    path = _write(tmp_path / "k.env", f"BINANCE_API_KEY={KEY}\n", mode=0o644)
    with pytest.raises(ConfigError, match="readable by others.*chmod 600"):
        read_env_file(path)


def test_a_bad_line_is_named_by_number_without_its_value(tmp_path):
    path = _write(tmp_path / "k.env", f"BINANCE_API_KEY={KEY}\n{SECRET}\n")
    with pytest.raises(ConfigError, match="line 2: expected KEY=VALUE") as caught:
        read_env_file(path)
    assert SECRET not in str(caught.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="credentials file .*nothing.env"):
        read_env_file(tmp_path / "nothing.env")


PEM = (
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKo3eR9x+Qk/2vY1lJp0Zs8Vq6m5L0cW3aN7bT1uE4einG+\n"
    "-----END PRIVATE KEY-----\n"
)


@pytest.mark.parametrize(
    "value",
    [PEM, PEM.splitlines()[1], f"BINANCE_API_KEY={KEY}\nBINANCE_API_SECRET={SECRET}\n", SECRET.replace("-", "")],
)
def test_key_content_given_where_a_path_belongs_is_never_echoed(value: str) -> None:
    """A PEM, its base64 body, a credentials file's content or a secret put where the key file's (or the credentials
    file's) path belongs: the error says so and names the variable, never the value (before: the whole value)."""
    with pytest.raises(ConfigError) as caught:
        Credentials.from_env({"BINANCE_API_KEY": KEY, "BINANCE_PRIVATE_KEY_FILE": value})
    assert str(caught.value).startswith("BINANCE_PRIVATE_KEY_FILE ") and "(its value is not shown" in str(caught.value)
    with pytest.raises(ConfigError) as as_file:
        read_env_file(value)
    assert "credentials file (its value is not shown" in str(as_file.value)
    for error in (caught.value, as_file.value):
        for part in value.splitlines():
            assert part not in str(error) or part.startswith("-----")
        assert SECRET not in str(error) and KEY not in str(error)


@pytest.mark.parametrize("value", ["SUPERSECRET_short-1", "hunter2", "keys/ed25519.pem", "a\x00b"])
def test_a_key_file_setting_that_names_no_file_is_never_echoed(value: str) -> None:
    """Whatever shape a mistaken value takes (a short secret, one with _ or -), a value that names no file is not
    repeated: the variable is named and the file said not to exist (before: echoed unless it looked like a key)."""
    with pytest.raises(ConfigError) as caught:
        Credentials.from_env({"BINANCE_API_KEY": KEY, "BINANCE_PRIVATE_KEY_FILE": value})
    assert str(caught.value).startswith("BINANCE_PRIVATE_KEY_FILE names a file that does not exist (its value is not ")
    assert value not in str(caught.value) and "ed25519" not in str(caught.value)


def test_a_path_where_a_file_is_is_still_named(tmp_path) -> None:
    folder = tmp_path / "keys"
    folder.mkdir()
    with pytest.raises(ConfigError, match=rf"BINANCE_PRIVATE_KEY_FILE '{folder}': cannot read it \(Is a directory\)"):
        Credentials.from_env({"BINANCE_API_KEY": KEY, "BINANCE_PRIVATE_KEY_FILE": str(folder)})


def test_the_credentials_file_setting_refuses_the_files_content() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_engine_config(
            {"instruments": [], "balances": {}, "venue": {"kind": "binance", "symbols": ["BTCUSDT"],
                                          "credentials_file": f"BINANCE_API_KEY={KEY}\nBINANCE_API_SECRET={SECRET}"}},
            source="engine.yaml",
        )  # fmt: skip
    assert "venue.credentials_file: must be the path of a KEY=VALUE file" in str(caught.value)
    assert SECRET not in str(caught.value) and KEY not in str(caught.value)


@pytest.mark.parametrize(
    "path",
    ["/nix/store/0c9yflwd6y6xv1kxr8k7d4m0hbb2s3i5-veloz-secrets/binance.env",
     "/run/secrets/3f2b1c0e9d8a7b6c5d4e3f2a1b0c9d8e/binance.env", "/srv/veloz/env=prod/binance.env"],
)  # fmt: skip
def test_an_ordinary_path_with_a_hash_or_an_equals_sign_is_a_credentials_file(path: str) -> None:
    """Only what cannot be a path is refused (several lines, a PEM, a KEY=VALUE line); an error about such a path
    may still leave it out."""
    config = parse_engine_config(
        {
            "instruments": [],
            "balances": {},
            "venue": {"kind": "binance", "symbols": ["BTCUSDT"], "credentials_file": path},
        },
        source="engine.yaml",
    )
    assert config.venue.credentials_file == path
