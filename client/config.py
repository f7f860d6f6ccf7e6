"""Where the CLI finds the server, the key and the label set in use.

Each value comes from the first of: a command-line flag, an environment variable
(`REFTAG_URL`, `REFTAG_KEY`, `REFTAG_LABEL_SET`), the config file, a default (the URL
`make run` serves on). The config file is TOML, `$XDG_CONFIG_HOME/reftag/config.toml`
(`~/.config/reftag/config.toml`), or the path in `REFTAG_CONFIG`; `reftag login` and
`reftag label-sets use` write it, readable by its owner only since it holds a key.
"""
from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"
FIELDS = {"url": "REFTAG_URL", "key": "REFTAG_KEY", "label_set": "REFTAG_LABEL_SET"}


class ConfigError(Exception):
    pass


def config_path() -> Path:
    if os.environ.get("REFTAG_CONFIG"):
        return Path(os.environ["REFTAG_CONFIG"]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "reftag" / "config.toml"


def read_file(path: Path | None = None) -> dict[str, str]:
    path = path or config_path()
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    return {name: str(data[name]) for name in FIELDS if data.get(name)}


def write_file(values: dict[str, str | None], path: Path | None = None) -> Path:
    """Update the config file with `values` (None removes a field); other fields stay."""
    path = path or config_path()
    merged = {**read_file(path), **values}
    # A JSON string is a valid TOML basic string (same escapes), so no TOML writer is needed.
    text = "".join(f"{name} = {json.dumps(merged[name])}\n" for name in FIELDS if merged.get(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class Setting:
    value: str | None
    source: str  # "--url", "REFTAG_URL", the config file's path, or "default"


def server_url(flag_value: str | None) -> str:
    """The server to talk to: the flag, REFTAG_URL, the config file, else the default."""
    return resolve("url", flag_value, "--url").value or DEFAULT_URL


def resolve(name: str, flag_value: str | None, flag: str) -> Setting:
    if flag_value:
        return Setting(flag_value, flag)
    env = FIELDS[name]
    if os.environ.get(env):
        return Setting(os.environ[env], env)
    from_file = read_file().get(name)
    if from_file:
        return Setting(from_file, str(config_path()))
    return Setting(DEFAULT_URL, "default") if name == "url" else Setting(None, "not set")
