"""Pure matching for a reader's profile: followed author names, and keywords in and out.

arXiv has no author ids, so a followed name is matched against each paper's author names
(already Unicode: `sources.authors` decodes TeX at ingest). Both sides are reduced to a
surname and a list of given names: diacritics folded (Rémy ~ Remy, Łukasz ~ Lukasz),
"Last, First" turned round, particles kept with the surname (van der Maaten), suffixes
(Jr., III) dropped. The surnames must be equal and the given names compatible position by
position, an initial standing for any name that starts with it (Y. Bengio ~ Yoshua Bengio,
J.-P. Serre ~ Jean-Pierre Serre); Samy Bengio is not Yoshua Bengio. A followed name of one
word matches only an author of that one word: a bare common surname ("Wang") would otherwise
bring a hundred papers a day. A name in quotes ("Wei Zhang") matches only its full spelling,
for the reader who saw a false match through an initial.

Keywords match title and abstract (and the Chinese title and abstract when there is an
enrichment) after NFKC (full-width Ｓｐｅｅｃｈ is Speech), case folding and whitespace
collapsing. A keyword that starts with a Latin letter or digit must start a word ("gan" does
not hit "organ"), and may run on ("speech" hits "speeches"); Chinese has no word boundaries,
so a Chinese keyword matches anywhere.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

# Letters NFKD does not split into a base letter and a mark.
_FOLD = str.maketrans({"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ı": "i",
                       "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "þ": "th", "ð": "d"})
# Lower-case words that belong to the surname that follows them.
_PARTICLES = frozenset({"van", "von", "der", "den", "de", "del", "della", "di", "da", "dos",
                        "das", "du", "la", "le", "ten", "ter", "zu", "af", "al", "bin", "ibn"})
_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv"})
_SPLIT = re.compile(r"[\s.\-‐‑–—]+")
_SPACE = re.compile(r"\s+")
# A space between two non-Latin characters (大 模型): Chinese is written without them.
_CJK_SPACE = re.compile(r"(?<=[^\x00-\x7f]) (?=[^\x00-\x7f])")


def fold(text: str) -> str:
    """Case, width and diacritics folded: "Rémy Ｌｅｃｌｅｒｃ" → "remy leclerc"."""
    text = unicodedata.normalize("NFKC", text).translate(_FOLD)
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SPACE.sub(" ", bare.casefold()).strip()


@lru_cache(maxsize=65536)
def parse_name(name: str) -> tuple[tuple[str, ...], str]:
    """(given names, surname), folded; ((), "") for a name with no letters."""
    name = fold(name).replace("'", "").replace("’", "")
    if "," in name:
        head, _, tail = name.partition(",")
        tail_words = [w for w in _SPLIT.split(tail) if w]
        if tail_words and not all(w in _SUFFIXES for w in tail_words):
            name = f"{tail} {head}"  # "Bengio, Yoshua" → "Yoshua Bengio"
        else:
            name = head
    words = [w for w in _SPLIT.split(name.replace(",", " ")) if w and w not in _SUFFIXES]
    words = [w for w in words if any(c.isalnum() for c in w)]
    if not words:
        return (), ""
    start = len(words) - 1
    while start > 1 and words[start - 1] in _PARTICLES:
        start -= 1
    return tuple(words[:start]), " ".join(words[start:])


def _compatible(a: str, b: str) -> bool:
    if len(a) == 1 or len(b) == 1:
        return a[0] == b[0]
    return a == b


def _strict(followed: str) -> str | None:
    """The name inside quotes ("Wei Zhang"), which matches only that spelling, or None."""
    text = followed.strip()
    for left, right in (('"', '"'), ("“", "”"), ("「", "」")):
        if len(text) > 2 and text.startswith(left) and text.endswith(right):
            return text[1:-1]
    return None


def same_person(followed: str, author: str) -> bool:
    """Whether the author name can be the followed person (see the module's rules).

    A followed name in quotes takes no initials either way: a reader whose "Wei Zhang" keeps
    bringing W. Zhang's papers follows "\"Wei Zhang\"" instead.
    """
    strict = _strict(followed)
    f_given, f_last = parse_name(strict if strict is not None else followed)
    a_given, a_last = parse_name(author)
    if not f_last or f_last != a_last:
        return False
    if strict is not None:
        return f_given == a_given
    if not f_given or not a_given:
        # One word on either side: only the very same single word ("Prabhat" ~ "Prabhat").
        return not f_given and not a_given
    return all(_compatible(f, a) for f, a in zip(f_given, a_given, strict=False))


def match_author(followed: str, authors: Iterable[str]) -> str | None:
    """The first of `authors` (spelled as the paper spells it) that is the followed person."""
    for author in authors:
        if same_person(followed, author):
            return author
    return None


def name_key(name: str) -> str:
    """What makes two followed names the same entry: "Bengio, Yoshua" = "yoshua  bengio"
    (a quoted, exact-spelling name is another entry than the same name unquoted)."""
    strict = _strict(name)
    given, last = parse_name(strict if strict is not None else name)
    return ("=" if strict is not None else "") + " ".join([*given, last]).strip()


# -- keywords -----------------------------------------------------------------------------------


def keyword_key(word: str) -> str:
    """A keyword as it is compared and stored for uniqueness: NFKC, case-folded, one space."""
    spaced = _SPACE.sub(" ", unicodedata.normalize("NFKC", word).casefold()).strip()
    return _CJK_SPACE.sub("", spaced)


@lru_cache(maxsize=4096)
def _keyword_pattern(key: str) -> re.Pattern[str]:
    body = r"\s*".join(re.escape(part) for part in key.split(" "))
    # A Latin/digit keyword starts a word; a Chinese one matches anywhere.
    head = r"(?<![0-9a-z])" if key[:1].isascii() and key[:1].isalnum() else ""
    return re.compile(head + body)


def haystack(*texts: str | None) -> str:
    """Title, abstract (and Chinese texts) as one folded text to look keywords up in."""
    return " ".join(keyword_key(t) for t in texts if t)


def find_keyword(keys: Iterable[str], text: str) -> str | None:
    """The first keyword key that occurs in `text` (a `haystack`), or None."""
    for key in keys:
        if key and _keyword_pattern(key).search(text):
            return key
    return None
