"""The dashboard's hosting configuration: one TOML file, read and checked here (no streamlit).

    INFERENCE_KITCHEN_CONFIG=kitchen.toml make run        # or: make run CONFIG=kitchen.toml

`kitchen.example.toml` lists every key with its default and what it does. Without a file the dashboard runs in
"local" mode, as a single owner's tool on loopback; `[hosting] mode = "hosted"` turns on what a group needs
(models from an allow-list, caps per visitor, no tracebacks for visitors). A wrong key, type or value is refused
with a sentence naming it, before the server starts.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import tomllib

from engine.errors import SettingsError
from engine.facts import DEFAULT_MODEL

MODES = ("local", "hosted")


@dataclass(frozen=True, kw_only=True)
class Caps:
    """What one visitor may ask of a hosted kitchen (local mode keeps the engine's own limits)."""

    max_new_tokens: int = 256  # per request
    prompt_tokens: int = 1024  # per request, the typed prompt's tokens
    queue_length: int = 32  # requests waiting for the model; past it, a new one is refused with a message
    requests_per_visitor: int = 1  # active at once, per visitor
    seconds_per_request: float = 120.0  # cooking time; past it the request stops, its tokens so far kept
    imports_per_visitor: int = 20  # files one visitor may import
    data_folder_mb: float = 2000.0  # all runs together; past it, imports are refused (runs still save)


@dataclass(frozen=True, kw_only=True)
class KitchenConfig:
    """Everything the file can set; the defaults are local mode, today's single-owner behaviour."""

    mode: str = "local"
    address: str = "127.0.0.1"  # where the server listens (`make run HOST=…` overrides it)
    allowed_hosts: tuple[str, ...] = ()  # host names the server answers to (Streamlit's server.allowedHosts)
    models: tuple[str, ...] = (DEFAULT_MODEL,)  # hosted mode: the only names a visitor can load, first the default
    max_loaded_models: int = 2  # model slots alive at once, least recently used closed first
    load_timeout_s: float = 600.0  # a load still going then fails, with a retry button
    servers: tuple[str, ...] = ()  # hosted mode: the only OpenAI-compatible servers a visitor may send prompts to
    caps: Caps = field(default_factory=Caps)
    source: str = "defaults (no config file)"

    @property
    def hosted(self) -> bool:
        """True in hosted mode."""
        return self.mode == "hosted"


SECTIONS = {
    "hosting": {"mode": str, "address": str, "allowed_hosts": list},
    "models": {"allowed": list, "max_loaded": int, "load_timeout_s": float},
    "servers": {"allowed": list},
    "caps": {caps_field.name: caps_field.type for caps_field in fields(Caps)},
}
TYPE_NAMES = {"int": int, "float": float, "str": str, "list": list}
TYPE_WORDS = {int: "a whole number", float: "a number", str: "text", list: "a list"}


def expected_type(declared: object) -> type:
    """The Python type a key's value must have (dataclass fields name theirs as strings)."""
    return TYPE_NAMES[declared] if isinstance(declared, str) else declared


def checked_value(section: str, key: str, value: object, *, source: str) -> object:
    """The value, refused with a sentence if it is the wrong type or out of range."""
    where = f"{source}: [{section}] {key}"
    wanted = expected_type(SECTIONS[section][key])
    if wanted is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, wanted):
        raise SettingsError(f"{where} must be {TYPE_WORDS[wanted]}, not {value!r}")
    if wanted in (int, float) and (not math.isfinite(value) or value <= 0):
        raise SettingsError(f"{where} must be a positive number, not {value!r}")
    if wanted is list and not all(isinstance(item, str) and item.strip() for item in value):
        raise SettingsError(f"{where} must list non-empty names, not {value!r}")
    return value


def parse_config(text: str, *, source: str) -> KitchenConfig:
    """A KitchenConfig from a TOML text; SettingsError (one sentence) for any unknown, mistyped or bad value."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"{source} is not valid TOML: {err}") from None
    values: dict[str, dict] = {}
    for section, keys in data.items():
        if section not in SECTIONS or not isinstance(keys, dict):
            raise SettingsError(f"{source}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
        for key, value in keys.items():
            if key not in SECTIONS[section]:
                known = ", ".join(SECTIONS[section])
                raise SettingsError(f"{source}: unknown key {key!r} in [{section}] (known: {known})")
            values.setdefault(section, {})[key] = checked_value(section, key, value, source=source)
    hosting, models = values.get("hosting", {}), values.get("models", {})
    mode = hosting.get("mode", "local")
    if mode not in MODES:
        raise SettingsError(f"{source}: [hosting] mode must be one of {', '.join(MODES)}, not {mode!r}")
    allowed = tuple(name.strip() for name in models.get("allowed", [DEFAULT_MODEL]))
    if not allowed:
        raise SettingsError(f"{source}: [models] allowed must name at least one model")
    servers = tuple(url.strip().rstrip("/") for url in values.get("servers", {}).get("allowed", []))
    for url in servers:
        if not url.startswith(("http://", "https://")) or "@" in url:
            raise SettingsError(f"{source}: [servers] allowed lists http://host:8000/v1, not {url!r}")
    return KitchenConfig(
        mode=mode,
        servers=servers,
        address=hosting.get("address", KitchenConfig.address),
        allowed_hosts=tuple(hosting.get("allowed_hosts", ())),
        models=allowed,
        max_loaded_models=models.get("max_loaded", KitchenConfig.max_loaded_models),
        load_timeout_s=models.get("load_timeout_s", KitchenConfig.load_timeout_s),
        caps=Caps(**values.get("caps", {})),
        source=source,
    )


def load_config(path: str | Path | None = None) -> KitchenConfig:
    """The configuration from `path`, else from $INFERENCE_KITCHEN_CONFIG, else the local-mode defaults."""
    chosen = path if path is not None else os.environ.get("INFERENCE_KITCHEN_CONFIG", "").strip() or None
    if chosen is None:
        return KitchenConfig()
    file = Path(chosen).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise SettingsError(f"cannot read the config file {str(file)!r}: {err.strerror or err}") from None
    return parse_config(text, source=str(file))
