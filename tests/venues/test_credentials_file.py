"""``venue.credentials_file``: a 0600 KEY=VALUE file a process (a restarted venue actor) reads its Binance keys from;
errors name the file and the line, never a value."""

from __future__ import annotations

import pytest

from veloz_actors._exceptions import ConfigError
from veloz_actors.venues.binance.auth import CredentialsRef, read_env_file

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
