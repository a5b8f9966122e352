import pytest

from tagger.model.vocab import MTAT_GROUP_ALIASES, MTAT_GROUPS, MTAT_TAGS, Vocabulary, tag_name


@pytest.fixture
def vocab():
    return Vocabulary(MTAT_TAGS, MTAT_GROUPS, MTAT_GROUP_ALIASES)


def test_names():
    assert tag_name("female vocal") == "female_vocal"
    assert tag_name("New Age") == "new_age"
    assert tag_name("no-vocals") == "no_vocals"
    assert len(MTAT_TAGS) == 50 and len(set(MTAT_TAGS)) == 50


def test_groups_and_raw_tags(vocab):
    assert vocab.resolve("female_vocals") == ["female", "woman", "female vocal", "female voice"]
    assert vocab.resolve("Instrumental") == ["no vocal", "no vocals", "no voice"]
    assert vocab.resolve("vocals") == ["vocal", "vocals", "voice", "singing"]  # the group wins
    assert vocab.resolve("raw:vocals") == ["vocals"]
    assert vocab.resolve("no vocals") == ["no vocals"]  # raw text with a space: the raw tag
    assert vocab.resolve("no_vocals") == MTAT_GROUPS["no_vocals"]
    assert vocab.resolve("new_age") == ["new age"]
    assert vocab.resolve("TECHNO") == ["techno"]
    assert vocab.resolve("polka") is None


def test_suggestions(vocab):
    assert "female_vocals" in vocab.suggest("female_vocal_s")
    assert "techno" in vocab.suggest("tecno")


def test_groups_must_name_known_tags():
    with pytest.raises(ValueError, match="unknown tags"):
        Vocabulary(["a", "b"], {"g": ["a", "c"]})
