"""What a visitor may ask of this dashboard: the hosting configuration (engine/config.py), read once per server,
and the one place pages ask it. Local mode answers as the dashboard always did; hosted mode narrows it.
"""

from __future__ import annotations

import functools

from engine.config import KitchenConfig, load_config
from engine.errors import SettingsError
from engine.facts import model_slot_name
from engine.settings import max_new_tokens_cap


@functools.cache
def kitchen_config() -> KitchenConfig:
    """The server's configuration ($INFERENCE_KITCHEN_CONFIG, else local mode), read once."""
    return load_config()


def offered_models() -> tuple[str, ...] | None:
    """The models a visitor may pick (hosted mode, the first is the default); None: any name (local mode)."""
    config = kitchen_config()
    return config.models if config.hosted else None


def check_model_allowed(name: str) -> None:
    """Raise SettingsError for a model this kitchen does not offer (hosted mode), whatever the page was sent."""
    offered = offered_models()
    if offered is not None and model_slot_name(name) not in {model_slot_name(model) for model in offered}:
        raise SettingsError(f"{name!r} is not one of this kitchen's models ({', '.join(offered)})")


def offered_servers() -> tuple[str, ...] | None:
    """The servers a visitor may stream from (hosted mode: the config's list, maybe empty); None: any (local mode)."""
    config = kitchen_config()
    return config.servers if config.hosted else None


def check_server_allowed(url: str) -> None:
    """Raise SettingsError for a server address this kitchen does not offer (hosted mode), whatever was sent."""
    offered = offered_servers()
    if offered is not None and url.strip().rstrip("/") not in offered:
        raise SettingsError("that server is not one this kitchen offers")


def max_new_tokens_limit() -> int:
    """The most new tokens one request may ask for here."""
    config = kitchen_config()
    return min(config.caps.max_new_tokens, max_new_tokens_cap()) if config.hosted else max_new_tokens_cap()


def check_new_tokens_allowed(max_new_tokens: int) -> None:
    """Raise SettingsError for more new tokens than this kitchen allows one request, whatever the page was sent."""
    limit = max_new_tokens_limit()
    if max_new_tokens > limit:
        raise SettingsError(f"at most {limit:,} new tokens per request here, not {max_new_tokens:,}")


def requests_per_visitor() -> int:
    """How many requests one browser session may have queued or cooking at once."""
    config = kitchen_config()
    return config.caps.requests_per_visitor if config.hosted else 1


def queue_length() -> int | None:
    """How many requests may wait for a model before new ones are refused (None: no limit, local mode)."""
    config = kitchen_config()
    return config.caps.queue_length if config.hosted else None


def seconds_per_request() -> float | None:
    """How long one request may cook before it is stopped (None: no limit, local mode)."""
    config = kitchen_config()
    return config.caps.seconds_per_request if config.hosted else None


def prompt_tokens_limit() -> int | None:
    """The most tokens a typed prompt may have (None: the model's context decides, local mode)."""
    config = kitchen_config()
    return config.caps.prompt_tokens if config.hosted else None


def import_room(*, imported_by_visitor: int, store_bytes: int, file_bytes: int) -> str | None:
    """Why one more import is refused here (its sentence), or None when there is room."""
    config = kitchen_config()
    if not config.hosted:
        return None
    if imported_by_visitor >= config.caps.imports_per_visitor:
        return f"you have imported {imported_by_visitor} files, this kitchen's limit per visitor"
    quota = config.caps.data_folder_mb * 1e6
    if store_bytes + file_bytes > quota:
        return f"this kitchen's runs already use {store_bytes / 1e6:,.0f} MB of its {quota / 1e6:,.0f} MB"
    return None
