"""The feature map: the contract between data preparation, models and serving.

``feature_map.json`` lists every field by role with its vocabulary size, the protocol that made the
data and the maximum sequence length. It is versioned (``format_version``) and hashed (``hash``
covers everything but itself) so that a model can refuse data prepared differently.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from suan.utils.config import Config, ConfigError, require

FORMAT_VERSION = 1
PAD_ID = 0
OOV_ID = 1


class Role(StrEnum):
    """What a field means to a model."""

    USER = "user"  # user-profile categorical (one id per sample)
    CONTEXT = "context"  # context categorical of the impression (hour, device, ...)
    DENSE = "dense"  # float feature of the sample
    SEQ = "seq"  # per-behaviour categorical, list column ``hist_<name>``
    SEQ_TIME = "seq_time"  # behaviour timestamps (unix seconds), list column
    TARGET = "target"  # candidate item categorical
    TARGET_TIME = "target_time"  # impression timestamp (unix seconds)
    LABEL = "label"  # click (1) or not (0)


CATEGORICAL_ROLES = (Role.USER, Role.CONTEXT, Role.SEQ, Role.TARGET)


@dataclass(frozen=True, kw_only=True, slots=True)
class FieldSpec(Config):
    """One column of the prepared shards.

    Args:
        name: column name in the Parquet shards.
        role: a :class:`Role` value.
        vocab: vocabulary name for categoricals; a behaviour field and a target field with the same
            vocab share embeddings (e.g. ``item_id``). Default: ``""`` (non-categorical).
        vocab_size: ids are ``0`` padding, ``1`` OOV, then fitted values. Default: ``0``.
    """

    name: str
    role: str
    vocab: str = ""
    vocab_size: int = 0

    def validate(self) -> None:
        require(bool(self.name), "field name must not be empty")
        try:
            role = Role(self.role)
        except ValueError as exc:
            raise ConfigError(f"field {self.name}: unknown role {self.role!r}") from exc
        if role in CATEGORICAL_ROLES:
            require(bool(self.vocab), f"categorical field {self.name} needs a vocab name")
            require(self.vocab_size >= 2, f"field {self.name}: vocab_size must be >= 2 (pad + OOV)")


@dataclass(frozen=True, kw_only=True, slots=True)
class FeatureMap(Config):
    """All fields of a prepared dataset plus how it was made.

    Args:
        dataset: source name (``synthetic``, ``movielens-100k``, ...).
        protocol: protocol name (``P-ML``, ``P-AZ``, ``time-split``, ``leave-last-out``).
        max_seq_len: L, the most behaviours kept per sample (most recent).
        fields: every column with its role.
        format_version: schema format. Default: current.
        extra: free-form facts (negative sampling rate, split rule). Default: empty.
    """

    dataset: str
    protocol: str
    max_seq_len: int
    fields: tuple[FieldSpec, ...]
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] | None = None

    def validate(self) -> None:
        require(self.max_seq_len >= 1, "max_seq_len must be >= 1")
        names = [f.name for f in self.fields]
        require(len(names) == len(set(names)), f"duplicate field names in {names}")
        for role in (Role.SEQ_TIME, Role.TARGET_TIME, Role.LABEL):
            require(sum(f.role == role for f in self.fields) == 1, f"exactly one {role} field is required")
        require(any(f.role == Role.TARGET for f in self.fields), "at least one target field is required")

    def by_role(self, role: Role) -> tuple[FieldSpec, ...]:
        """Fields of one role, in declaration order."""
        return tuple(f for f in self.fields if f.role == role)

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"no field {name!r}; fields: {[f.name for f in self.fields]}")

    def vocab_sizes(self) -> dict[str, int]:
        """Vocabulary name → size (pad and OOV included)."""
        return {f.vocab: f.vocab_size for f in self.fields if f.vocab}

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of everything in the map."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def save(self, path: str | Path) -> None:
        """Write ``feature_map.json`` with its hash alongside the content."""
        payload = {**self.to_dict(), "hash": self.hash}
        Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> FeatureMap:
        """Read ``feature_map.json`` and check that its content still matches its hash."""
        data = json.loads(Path(path).read_text())
        stored = data.pop("hash", None)
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ConfigError(f"{path}: format_version {version} is not supported (want {FORMAT_VERSION})")
        fmap = cls.from_dict(data)
        if stored is not None and stored != fmap.hash:
            raise ConfigError(f"{path}: content does not match its hash (edited by hand?)")
        return fmap
