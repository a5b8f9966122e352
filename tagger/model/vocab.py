"""Tag vocabulary: command-line names for raw tags, and groups of near-synonyms
(shared/docs/tags.md). A model file carries its own tag list and groups; this module holds the
MagnaTagATune ones and the rules that turn what a person types into raw tags.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence

MTAT_TAGS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
)

MTAT_GROUPS: dict[str, list[str]] = {
    "female_vocals": ["female", "woman", "female vocal", "female voice"],
    "male_vocals": ["male", "man", "male vocal", "male voice"],
    "vocals": ["vocal", "vocals", "voice", "singing"],
    "no_vocals": ["no vocal", "no vocals", "no voice"],
    "classical": ["classical", "classic"],
    "beats": ["beat", "beats"],
    "choir": ["choir", "choral"],
}

# other names a person may type for a group
MTAT_GROUP_ALIASES: dict[str, str] = {"instrumental": "no_vocals"}


def tag_name(raw: str) -> str:
    """A raw tag's command-line name: lower case, spaces and hyphens → ``_``."""
    return re.sub(r"[\s\-]+", "_", raw.strip().lower())


class Vocabulary:
    """A model's raw tags and groups, with lookups by raw text, name or group name."""

    def __init__(self, tags: Sequence[str], groups: Mapping[str, Sequence[str]] | None = None,
                 aliases: Mapping[str, str] | None = None, genres: Sequence[str] | None = None,
                 moods: Sequence[str] | None = None) -> None:
        self.tags = list(tags)
        self.groups = {g: list(m) for g, m in (groups or {}).items()}
        self.aliases = dict(aliases or {})
        index = {t: i for i, t in enumerate(self.tags)}
        for g, members in self.groups.items():
            missing = [m for m in members if m not in index]
            if missing:
                raise ValueError(f"group {g!r} names unknown tags {missing}")
        # tags or groups that are genres / moods (GENRE and MOOD fields, the map's colours):
        # a vocabulary may name its own; else the MagnaTagATune ones it has
        self.genres = [g for g in (genres if genres is not None else sorted(MTAT_GENRES)) if self.resolve(g)]
        self.moods = [m for m in (moods if moods is not None else sorted(MTAT_MOODS)) if self.resolve(m)]

    def resolve(self, text: str) -> list[str] | None:
        """The raw tags that ``text`` stands for (a group gives all its members), or None.

        A group name wins over a raw tag of the same name (``vocals`` is the group); the raw
        tag alone is reachable by raw text that differs from its name (``"no vocals"``) or with
        the prefix ``raw:`` (``raw:vocals``).
        """
        key = text.strip()
        if key.lower().startswith("raw:"):
            wanted = tag_name(key[4:])
            return next(([t] for t in self.tags if tag_name(t) == wanted), None)
        for t in self.tags:
            if t != tag_name(t) and t == key.lower():
                return [t]
        name = tag_name(key)
        name = self.aliases.get(name, name)
        if name in self.groups:
            return list(self.groups[name])
        return next(([t] for t in self.tags if tag_name(t) == name), None)

    def names(self) -> list[str]:
        return sorted({tag_name(t) for t in self.tags} | set(self.groups) | set(self.aliases))

    def suggest(self, text: str, n: int = 3) -> list[str]:
        return difflib.get_close_matches(tag_name(text), self.names(), n=n, cutoff=0.5)


# Which MTAT tags (or groups) are genres and which are moods, for the GENRE and MOOD fields;
# the rest (instruments, vocals, tempo-free descriptions) go only to tagger's own fields.
MTAT_GENRES = frozenset({"classical", "techno", "electronic", "rock", "ambient", "indian", "opera",
                         "pop", "new age", "dance", "country", "metal"})
MTAT_MOODS = frozenset({"slow", "fast", "loud", "quiet", "soft", "weird"})
