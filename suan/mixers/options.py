"""The base of every mixer's own options (torch-free: ``ModelConfig`` nests them and stays cheap to import)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from suan.utils.config import Config, require


@dataclass(frozen=True, kw_only=True, slots=True)
class MixerOptions(Config):
    """A mixer's own settings, each field meaning one thing for that mixer (this base has none).

    Each mixer names its subclass (``Mixer.options``). ``counts`` maps every field to the generic count of
    ``ModelConfig`` and the command line (``local_window``, ``dilation``, ``num_blocks``) that sets it, so
    the one flag ``--local-window`` can be a window, a block, a span or a chunk without the mixer's code
    having to know.
    """

    counts: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_counts(cls, **counts: int) -> MixerOptions:
        """These options from the generic counts (``local_window=8, dilation=4, num_blocks=4``)."""
        return cls(**{name: counts[count] for name, count in cls.counts.items()})

    @classmethod
    def field_names(cls) -> list[str]:
        """The fields, in order (what ``--mixer-options`` and ``mixer.<field>`` accept)."""
        return [f.name for f in fields(cls)]

    @classmethod
    def own(cls, given: MixerOptions, who: str) -> MixerOptions:
        """``given`` as this class's options: the base class stands for this class's defaults, any other
        class is an error naming this one's fields (``who``: the mixer, for the message)."""
        if type(given) is MixerOptions:
            return cls()
        require(type(given) is cls, f"{who} takes {cls.__name__} {cls.field_names()}, got "
                                    f"{type(given).__name__}({given.to_dict()})")
        return given

    @classmethod
    def reads(cls) -> dict[str, str]:
        """Generic count → the field it sets here, e.g. ``{"local_window": "block"}``."""
        return {count: name for name, count in cls.counts.items()}
