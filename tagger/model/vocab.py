"""Tag vocabulary: command-line names for raw tags, and groups of near-synonyms
(shared/docs/tags.md). A model file carries its own tag list and groups; this module holds the
MagnaTagATune (MTAT) and Million Song Dataset (MSD, Last.fm tags) ones, the rules that turn
what a person types into raw tags, and which names are genres, moods and decades.
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

# the Million Song Dataset's 50 Last.fm tags, in the order of musicnn's MSD checkpoints
MSD_TAGS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock",
    "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental",
    "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental",
    "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy",
    "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop",
    "sad", "House", "happy",
)

# Last.fm's near-duplicates, merged; named as the MTAT groups where they mean the same, so that
# --tag female_vocals or no_vocals means one thing in both vocabularies
MSD_GROUPS: dict[str, list[str]] = {
    "female_vocals": ["female vocalists", "female vocalist"],
    "male_vocals": ["male vocalists"],
    "no_vocals": ["instrumental"],
    "electronic": ["electronic", "electronica", "electro"],
    "chill": ["chill", "chillout"],
}
MSD_GROUP_ALIASES: dict[str, str] = {"r&b": "rnb", "r_n_b": "rnb", "hiphop": "hip_hop"}


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
        # tag or group names that are genres / moods (the map's colours): a vocabulary may name
        # its own; else those of its names that GENRES and MOODS list (a group stands for its
        # members: MSD's electronica is a member of the electronic group)
        grouped = {m for members in self.groups.values() for m in members}
        named = list(self.groups) + [tag_name(t) for t in self.tags if t not in grouped]
        self.genres = [g for g in (genres if genres is not None else [n for n in named if n in GENRES])
                       if self.resolve(g)]
        self.moods = [m for m in (moods if moods is not None else [n for n in named if n in MOODS])
                      if self.resolve(m)]

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
        for t in self.tags:  # raw text as written ("no vocals", "Hip-Hop"), in any case
            if t != tag_name(t) and t.lower() == key.lower():
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


# What goes into a file's GENRE and MOOD fields: the label written for a tag or group name,
# whichever vocabulary it comes from (Title Case, as players list genres); a name in neither
# (instruments, vocals, decades, descriptions) goes only to tagger's own fields.
GENRES: dict[str, str] = {
    # MagnaTagATune
    "classical": "Classical", "techno": "Techno", "electronic": "Electronic", "rock": "Rock",
    "ambient": "Ambient", "indian": "Indian", "opera": "Opera", "pop": "Pop", "new_age": "New Age",
    "dance": "Dance", "country": "Country", "metal": "Metal",
    # Million Song Dataset
    "alternative": "Alternative", "indie": "Indie", "alternative_rock": "Alternative Rock", "jazz": "Jazz",
    "classic_rock": "Classic Rock", "soul": "Soul", "indie_rock": "Indie Rock", "folk": "Folk",
    "punk": "Punk", "oldies": "Oldies", "blues": "Blues", "hard_rock": "Hard Rock", "acoustic": "Acoustic",
    "experimental": "Experimental", "hip_hop": "Hip-Hop", "easy_listening": "Easy Listening", "funk": "Funk",
    "heavy_metal": "Heavy Metal", "progressive_rock": "Progressive Rock", "rnb": "R&B", "indie_pop": "Indie Pop",
    "house": "House",
}
MOODS: dict[str, str] = {
    # MagnaTagATune (tempo and loudness, as moods players know)
    "slow": "Slow", "fast": "Fast", "loud": "Loud", "quiet": "Quiet", "soft": "Soft", "weird": "Weird",
    # Million Song Dataset
    "beautiful": "Beautiful", "chill": "Chill", "mellow": "Mellow", "party": "Party", "sexy": "Sexy",
    "catchy": "Catchy", "sad": "Sad", "happy": "Happy",
}
# decades are tags to list and query (--tag 80s), never a file's year
DECADES: dict[str, str] = {"60s": "1960s", "70s": "1970s", "80s": "1980s", "90s": "1990s", "00s": "2000s"}


def kind_of(name: str) -> str:
    """What a tag or group name is, for listings: genre, mood, decade or tag."""
    return "genre" if name in GENRES else "mood" if name in MOODS else "decade" if name in DECADES else "tag"

