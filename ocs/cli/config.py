"""Settings from a TOML file and the environment, read through the subcommand's own argparse
definitions: a key is an option's long name (``data-dir`` for ``--data-dir``), its value is
checked and converted by that option's own type, so an option added to a command is a key of
its file the day it is added.

- `ServeSettings`: ``ocs serve --config FILE.toml``. Every option of ``ocs serve`` but
  ``--config`` itself is a key; the command line overrides the file.
- `ClientSettings`: the commands that talk to a server (``ocs account``, ``ocs sim``) read the
  server's address and the TLS options from the environment (``OCS_SERVER``, ``OCS_TLS_CA``,
  ...: ``OCS_`` and the key in capitals, ``-`` as ``_``) and from a client file
  (``OCS_CLIENT_CONFIG``, else ``$XDG_CONFIG_HOME/ocs/client.toml``, else
  ``~/.config/ocs/client.toml`` if it exists). The command line overrides the environment,
  which overrides the file.

Values: a string for an option that takes text (``listen = "0.0.0.0:3868"``), a number or a
string for a number (``watchdog = 30``), true or false for a flag (``log-json = true``;
``no-fork-checkpoints = true``), an array for a repeatable option (``peer = ["pgw1=cc"]``).
Relative paths are taken from the working directory, as on the command line. An error names
the file and the key path (``peer[1]: unknown application 'voice'``), as the catalog's do.
"""

from __future__ import annotations

import argparse
import difflib
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

NOT_SETTINGS: Final = frozenset({"help", "version", "config"})
CLIENT_CONFIG_ENV: Final = "OCS_CLIENT_CONFIG"


class ConfigError(ValueError):
    """A configuration file or variable is wrong: the message names it and the key."""


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The long options of `parser` by name without the dashes (``data-dir``), but ``--help``
    and ``--config``."""
    found: dict[str, argparse.Action] = {}
    for action in parser._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag[2:] not in NOT_SETTINGS:
                found[flag[2:]] = action
    return found


def convert(action: argparse.Action, value: object, path: str) -> Any:
    """A value of the file for `action`, as the command line would have given it."""
    if action.nargs == 0:  # a flag: store_true, store_false, store_const
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return action.const if value else action.default
    if isinstance(action, argparse._AppendAction):
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected an array, got {value!r}")
        return [_convert_one(action, item, f"{path}[{i}]") for i, item in enumerate(value)]
    return _convert_one(action, value, path)


def _convert_one(action: argparse.Action, value: object, path: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{path}: expected a string or a number, got {value!r}")
    if action.type is None:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        result: Any = value
    else:
        convert_text = action.type
        assert callable(convert_text)
        try:
            result = convert_text(str(value))
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            if convert_text is int or convert_text is float:  # the builtins' texts are obscure
                what = "a whole number" if convert_text is int else "a number"
                raise ConfigError(f"{path}: expected {what}, got {value!r}") from None
            raise ConfigError(f"{path}: {exc}") from None
    if action.choices is not None and result not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigError(f"{path}: {value!r} is not one of {choices}")
    return result


def read_table(file: Path) -> dict[str, Any]:
    """The TOML table of `file` (raises `ConfigError` naming it)."""
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None


def settings(
    actions: Mapping[str, argparse.Action], table: Mapping[str, object], source: str
) -> dict[str, Any]:
    """The values of `table` (key -> value) by option name, converted; `ConfigError` for an
    unknown key or a wrong value, naming `source` and the key path."""
    found: dict[str, Any] = {}
    for key, value in table.items():
        action = actions.get(key)
        if action is None:
            close = difflib.get_close_matches(key, list(actions), n=1)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else "the keys are the long options: " + ", ".join(sorted(actions))
            )
            raise ConfigError(f"{source}: {key}: unknown key ({hint})")
        found[key] = convert(action, value, f"{source}: {key}")
    return found


def reparse(
    top: argparse.ArgumentParser,
    leaf: argparse.ArgumentParser,
    argv: Sequence[str],
    values: Mapping[str, Any],
) -> argparse.Namespace:
    """Parse `argv` again with `values` (option name -> converted value) as the defaults of
    the subcommand's parser `leaf`: what the command line gives wins, a repeatable option
    given on the command line replaces the file's list rather than adding to it."""
    actions = options(leaf)
    lists: dict[str, list[Any]] = {}
    defaults: dict[str, Any] = {}
    for key, value in values.items():
        action = actions[key]
        if isinstance(action, argparse._AppendAction):
            lists[action.dest] = value
        else:
            defaults[action.dest] = value
    leaf.set_defaults(**defaults)
    args = top.parse_args(argv)
    for dest, items in lists.items():
        if not getattr(args, dest, None):  # none on the command line
            setattr(args, dest, list(items))
    return args


class ServeSettings:
    """``ocs serve --config FILE``: the file's keys become the defaults of the command line.
    A wrong file does not stop the parse: it is left in ``args.config_error`` for `ocs serve`
    to report as its start-up failure (one `startup.failed` event, exit status 2)."""

    def __init__(self, leaf: argparse.ArgumentParser) -> None:
        self.leaf = leaf

    def __call__(
        self, top: argparse.ArgumentParser, argv: Sequence[str], args: argparse.Namespace
    ) -> argparse.Namespace:
        file: Path | None = args.config
        if file is None:
            return args
        try:
            values = settings(options(self.leaf), read_table(file), str(file))
        except ConfigError as exc:
            args.config_error = str(exc)
            return args
        return reparse(top, self.leaf, argv, values)


class ClientSettings:
    """The connection settings (`keys`) of a client command from the environment and the
    client file; a wrong value is a usage error of the command (exit status 2)."""

    def __init__(self, leaf: argparse.ArgumentParser, keys: Sequence[str]) -> None:
        self.leaf = leaf
        self.keys = tuple(keys)

    def __call__(
        self, top: argparse.ArgumentParser, argv: Sequence[str], args: argparse.Namespace
    ) -> argparse.Namespace:
        actions = {k: a for k, a in options(self.leaf).items() if k in self.keys}
        try:
            values: dict[str, Any] = {}
            file = client_config_file()
            if file is not None:
                values.update(settings(actions, read_table(file), str(file)))
            for key, action in actions.items():
                name = env_name(key)
                text = os.environ.get(name)
                if text:
                    values[key] = convert(action, text, name)
        except ConfigError as exc:
            self.leaf.error(str(exc))
        if not values:
            return args
        return reparse(top, self.leaf, argv, values)


def env_name(key: str) -> str:
    """``OCS_TLS_CA`` for ``tls-ca``."""
    return "OCS_" + key.upper().replace("-", "_")


def client_config_file() -> Path | None:
    """``$OCS_CLIENT_CONFIG`` (which must exist), else the user's ``ocs/client.toml`` if there
    is one."""
    named = os.environ.get(CLIENT_CONFIG_ENV)
    if named:
        return Path(named)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    default = Path(base) / "ocs" / "client.toml"
    return default if default.is_file() else None
