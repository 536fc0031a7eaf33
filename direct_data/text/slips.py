"""Small grammar slips of an instruction-tuned 7B model that the other checks do not read: an
article that does not fit the noun after it ("a huge *showers*", "*an* wooden rod", "*a* instant"),
and a verb form that does not fit the word before it ("is *fall*", "has *crack*", "starts to
*pulling*", "start *make*").

Each reader returns the snippets it finds; the validator rejects a negative as
``ungrammatical`` before its model when the negative has one its prompt has not
(`direct_data.text.validator._form_slip`). Cheap and local, no parser: the tagger's tokens, the
verb forms `features.verb_lemma` knows and WordNet's counts of how a word is used.
"""

from __future__ import annotations

from direct_data.text.axes import STOPWORDS
from direct_data.text.features import _CLASS_WORDS, _PHRASE_HEADS, _joined, verb_lemma
from direct_data.text.tagger import analyze, inflect, singular
from direct_data.text.wordnet import default_wordnet, mostly_adjective, usage_counts, vocabulary

#: words between "a" and a plural noun that make the plural right ("a few *seconds*", "a hundred
#: *times*", "a couple of")
_COUNTING = frozenset("few couple dozen hundred thousand million billion lot number great good total pair "
                      "series handful".split())
#: plurals that take "a" ("a *means* of", "a *series*") or that are no plural
_SINGULAR_S = frozenset("means series species news lens gas bus glass canvas chaos bias atlas thermos crossroads "
                        "headquarters barracks gallows physics mathematics gymnastics athletics aerobics billiards "
                        "whereabouts".split())
#: "an" before these is right: a silent "h"
_SILENT_H = frozenset("hour hours hourly honest honestly honour honor honorable honourable heir heirs heiress herb herbs".split())


def _consonant_sound(word: str) -> bool | None:
    """Whether `word` (lower case) starts with a consonant sound, by its spelling; None where the
    spelling does not tell (a digit, a single letter, an abbreviation)."""
    w = word.lower()
    if not w[:1].isalpha() or len(w) < 2 or (len(w) > 1 and w[1] == "-"):
        return None
    if w in _SILENT_H or w.startswith(("hour", "honest", "honor", "honour", "heir")):
        return False
    if w.startswith("un") and len(w) >= 6 and _is_word(w[2:]):
        return False  # "an *un*identified", "an *un*even": the prefix
    if w.startswith(("uni", "use", "usu", "uti", "ute", "ura", "ure", "uri", "uro", "ubi", "unan", "euro", "eu", "ewe",
                     "one", "once", "ufo", "uku", "uv")):
        return True
    return w[0] not in "aeiou"


def _is_word(word: str) -> bool:
    """`word` is a WordNet lemma (``vocabulary``)."""
    import bisect

    vocab = vocabulary()
    i = bisect.bisect_left(vocab, word)
    return i < len(vocab) and vocab[i] == word


def article_slips(text: str) -> list[str]:
    """Articles that do not fit what follows: "a" or "an" against the sound of the next word ("an
    wooden", "a instant"; not "an hour", "a unicorn", "a one-way", "an 8", "a U-turn"), and "a",
    "an", "every" or "each" before a plural noun that ends its phrase ("a huge *showers* of",
    "every *seconds*", "a delivery *vans*"; not "a few seconds", "a means of", "a sports car":
    there the plural is no noun's head)."""
    a = analyze(text)
    toks = [t.lower for t in a.tokens]
    n = len(toks)
    out: list[str] = []
    for i, w in enumerate(toks[:-1]):
        if w not in ("a", "an", "every", "each") or not _joined(text, a.tokens, i, i + 1) or toks[i + 1] == "other":
            continue
        if a.tokens[i].text == "A" and i > 0 and not any(ch in text[a.tokens[i - 1].end:a.tokens[i].start] for ch in ".!?:"):
            continue  # "Team *A* runners": a letter
        nxt = a.tokens[i + 1].text
        if w in ("a", "an") and not (nxt.isupper() and len(nxt) <= 5):
            sound = _consonant_sound(nxt)
            if sound is not None and sound != (w == "a"):
                out.append(f"{a.tokens[i].text} {nxt}")
                continue
        # the noun that ends the phrase: up to three modifiers, then a plural noun and no noun after it
        k = i + 1
        while k < n and k < i + 5 and _joined(text, a.tokens, k - 1, k):
            x = toks[k]
            v = verb_lemma(x)
            if x in _COUNTING or x.isdigit() or x in STOPWORDS or x in _PHRASE_HEADS or x.endswith(("'s", "’s")) \
                    or any(x in c for c in _CLASS_WORDS.values()) \
                    or (k > i + 1 and ((v is not None and v[1] in ("ing", "past", "pp")) or (x.endswith("ing") and len(x) > 5))):
                break  # "a few seconds", "a garden's transitions", "an artwork *featuring* mountains"
            after = toks[k + 1] if k + 1 < n and _joined(text, a.tokens, k, k + 1) else ""
            ends = not after or after in STOPWORDS or after in _PHRASE_HEADS or any(after in c for c in _CLASS_WORDS.values()) \
                or (verb_lemma(after) is not None and verb_lemma(after)[1] != "base") or (after.endswith("ing") and len(after) > 5)
            if ends:
                noun = singular(x)
                counts = usage_counts()
                # a plural noun, not a verb after its subject ("A person *steps* on": "step" is a verb too)
                verb_here = k > i + 1 and not mostly_adjective(toks[k - 1]) \
                    and (counts["v"].get(noun, 0) > 0 or bool(default_wordnet().lemmas(x, "v")))
                if x.isalpha() and x not in _SINGULAR_S and not x.endswith(("ss", "us", "is", "ics")) and noun != x \
                        and not mostly_adjective(x) and counts["n"].get(noun, 0) > 0 and not verb_here:
                    out.append(f"{a.tokens[i].text} ... {a.tokens[k].text}")
                break
            k += 1
    return out


_BE = frozenset("is are was were be being been am".split())
_HAVE = frozenset("has have had having".split())
#: verbs that take "to" and a bare verb, never "to" and an "-ing" form ("starts to *pulling*")
_TO_INFINITIVE = frozenset("start begin continue try seem appear need want manage fail tend decide refuse learn "
                           "attempt plan hope cease".split())
#: verbs that take an "-ing" form or "to", never a bare verb ("start *make* breakfast")
_ASPECT = frozenset("start begin".split())
_SKIP = frozenset("not never also still just then suddenly slowly quickly gradually even already".split())


def _verb_mostly(word: str) -> tuple[str, str] | None:
    """(lemma, form) of a verb form whose lemma WordNet's corpus used more often as a verb than as
    a noun and as an adjective, else None."""
    v = verb_lemma(word)
    if v is None or mostly_adjective(word):
        return None
    c = usage_counts()
    nv, nn, na = c["v"].get(v[0], 0), c["n"].get(v[0], 0), c["a"].get(v[0], 0)
    return v if nv > nn and nv > na and not c["a"].get(word, 0) else None


def verb_form_slips(text: str) -> list[str]:
    """Verb forms that do not fit the word before them: a bare verb after a form of "be" ("is
    *fall*", "are *buckle*", "being vigorously *stir*"; not "is *cut*": its own participle; not "is
    *open*", "is *still*": an adjective too), a bare verb or a past tense that is no participle after
    "have" ("has *crack*", "has *went*"), an "-ing" form after "start to" / "continue to" ...
    ("starts to *pulling*"), and a bare verb right after "start" / "begin" ("start *make*
    breakfast"). Only words WordNet's corpus used mostly as verbs are read as verbs here, and
    adverbs may stand between ("is being vigorously *stir*")."""
    a = analyze(text)
    toks = [t.lower for t in a.tokens]
    n = len(toks)
    out: list[str] = []
    for i, w in enumerate(toks[:-1]):
        j = i + 1
        while j < n - 1 and (toks[j] in _SKIP or (toks[j].endswith("ly") and len(toks[j]) > 4)) \
                and _joined(text, a.tokens, j - 1, j):
            j += 1
        if not _joined(text, a.tokens, i, j):
            continue
        x = toks[j]
        v = _verb_mostly(x)
        first = verb_lemma(w)
        if w in _BE or w in _HAVE:
            after = toks[j + 1] if j + 1 < n and _joined(text, a.tokens, j, j + 1) else ""
            if after and not (after in _CLASS_WORDS["P"] or after in _CLASS_WORDS["R"] or after in _CLASS_WORDS["D"]
                              or after in _PHRASE_HEADS or mostly_adjective(after) or after.endswith("ly")):
                continue  # "has *pepper* flakes": a noun before a noun
            if (x in _PAST_NOT_PP and w in _HAVE) or (
                    v is not None and v[1] == "base" and x not in _SAME_FORM and x not in _CLASS_WORDS["P"]
                    and inflect(v[0], "pp") != x):
                out.append(f"{a.tokens[i].text} {a.tokens[j].text}")
        elif first is not None and first[0] in _TO_INFINITIVE and x == "to" and j + 1 < n \
                and _joined(text, a.tokens, j, j + 1):
            after = verb_lemma(toks[j + 1])
            if after is not None and after[1] == "ing" and _verb_mostly(toks[j + 1]) is not None:
                out.append(f"{a.tokens[i].text} to {a.tokens[j + 1].text}")
        elif first is not None and first[0] in _ASPECT and first[1] != "ing" and j == i + 1 \
                and v is not None and v[1] == "base" and x not in _SAME_FORM:
            out.append(f"{a.tokens[i].text} {a.tokens[j].text}")
    return out


#: verbs whose participle is their base form ("is *cut*", "has *set*")
_SAME_FORM = frozenset("cut set put hit let shut split spread burst cast cost hurt quit read rid shed slit thrust "
                       "upset bet bid knit spit come become run overcome".split())
#: past tenses that are not their verb's participle ("has *went*", "had *fell*")
#: (not "saw", "bit", "rose": nouns too, "have *saw* blades")
_PAST_NOT_PP = frozenset("went fell broke ran swam took gave ate drove flew froze wrote spoke chose shook stole threw "
                         "grew blew drew knew began sank sang rang drank sprang shrank tore wore hid rode did came became "
                         "forgot woke arose".split())
