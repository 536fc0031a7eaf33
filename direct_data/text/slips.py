"""Small grammar slips of an instruction-tuned 7B model that the other checks do not read: an
article that does not fit the noun after it ("a huge *showers*", "*an* wooden rod", "*a* instant"),
a verb form that does not fit the word that governs it ("is *fall*", "has *crack*", "starts to
*pulling*", "start *make*", "to *levitates*", "will *rolling*", "makes the leaves *to* swirl", "they
*flying*"), a word form that does not fit beside its neighbour or is no English ("violent
*violently*", "the same *a*", "less *then* a second", "more *faster*", "*fastly*", "*throwed*"), a
coordinated subject with a verb in the singular ("A cat and a dog *runs*") and "be" of the other
number ("the clothes *is*", "a spoon *are*").

Each reader returns the snippets it finds; the validator rejects a negative as
``ungrammatical`` before its model when the negative has one its prompt has not
(`direct_data.text.validator._form_slip`). Cheap and local, no parser: the tagger's tokens, the
verb forms `features.verb_lemma` knows and WordNet's counts of how a word is used. Session 41 added
the article and "be" / "have" / "start" readers, session 42 the rest.
"""

from __future__ import annotations

from direct_data.text.axes import STOPWORDS
from direct_data.text.features import _CLASS_WORDS, _PHRASE_HEADS, _joined, verb_lemma
from direct_data.text.tagger import analyze, inflect, singular
from direct_data.text.wordnet import default_wordnet, mostly_adjective, noun_file, usage_counts, vocabulary

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
            counts = usage_counts()
            if after.endswith("s") and (mostly_adjective(x) or (x.endswith("ing") and not counts["n"].get(x, 0))):
                # "a widening *rings*.": a modifier, then a plural noun that ends the phrase
                last = toks[k + 2] if k + 2 < n and _joined(text, a.tokens, k + 1, k + 2) else ""
                head = singular(after)
                if head != after and after not in _SINGULAR_S and default_wordnet().lemmas(head, "n") \
                        and (not last or last in _PHRASE_HEADS or last in _CLASS_WORDS["D"] or last in _CLASS_WORDS["C"]):
                    out.append(f"{a.tokens[i].text} ... {a.tokens[k + 1].text}")
                    break
            if ends:
                noun = singular(x)
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
#: verbs that take an "-ing" form (or "to"), never a bare verb ("start *make* breakfast", "keeps *blow*")
_ASPECT = frozenset("start begin keep stop finish".split())
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
    breakfast", "keeps *blow*"). Only words WordNet's corpus used mostly as verbs are read as verbs here, and
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
            if after is not None and after[1] == "ing" and first[0] != "tend" \
                    and usage_counts()["n"].get(toks[j + 1], 0) < usage_counts()["v"].get(after[0], 0):
                out.append(f"{a.tokens[i].text} to {a.tokens[j + 1].text}")  # not "tend to *bleeding* wounds", "to the *building*"
        elif first is not None and first[0] in _ASPECT and first[1] != "ing" and j == i + 1 and x not in _SAME_FORM \
                and ((v is not None and v[1] == "base") or ((verb_lemma(x) or ("", ""))[1] == "base" and j + 1 < n
                     and _joined(text, a.tokens, j, j + 1) and (toks[j + 1] in _CLASS_WORDS["D"] or toks[j + 1] in _CLASS_WORDS["O"]
                                                              or toks[j + 1] in _CLASS_WORDS["R"]))) \
                and (i == 0 or (toks[i - 1] not in _CLASS_WORDS["D"] and not mostly_adjective(toks[i - 1]))):
            out.append(f"{a.tokens[i].text} {a.tokens[j].text}")  # "keeps *blow*"; not "a stop *sign*"
    return out


#: verbs whose participle is their base form ("is *cut*", "has *set*")
_SAME_FORM = frozenset("cut set put hit let shut split spread burst cast cost hurt quit read rid shed slit thrust "
                       "upset bet bid knit spit come become run overcome".split())
#: past tenses that are not their verb's participle ("has *went*", "had *fell*")
#: (not "saw", "bit", "rose": nouns too, "have *saw* blades")
_PAST_NOT_PP = frozenset("went fell broke ran swam took gave ate drove flew froze wrote spoke chose shook stole threw "
                         "grew blew drew knew began sank sang rang drank sprang shrank tore wore hid rode did came became "
                         "forgot woke arose".split())


#: modal verbs: a bare verb follows ("can *floats*", "will *rolling*")
_MODALS = frozenset("can could will would shall should might must".split())
#: verbs that take an "-ing" form or "to" and a bare verb, never a finite form ("start *levitates*")
_ASPECT_ANY = _ASPECT | {"continue"}
#: verbs that take an object and a bare verb ("letting the beam *bends*": "let the beam bend")
_CAUSATIVE = frozenset("let make help".split())
#: words before "to" that make it an infinitive's ("starts to", "is seen to", "able to")
_TO_TAKERS = _TO_INFINITIVE | frozenset("see cause allow force get used able about going ought expect happen".split())
#: subordinators that open a clause with its own subject ("while *hovers*": no subject)
_SUBORDINATORS = frozenset("while whereas although though because unless".split())
#: pronouns that are subjects only: an "-ing" form right after one needs "be" ("they *flying*")
_SUBJECT_PRONOUNS = frozenset("he she they we i".split())
#: words that open a clause with its own finite verb ("until it *bursting*")
_CLAUSE_OPENERS = frozenset("until while when as because although though since once unless whereas if".split())
#: determiners that never stand before an article ("the same *a*", "*a the*"; not "all the",
#: "half a", "such a", "what a", "both the")
_NO_ARTICLE_AFTER = frozenset("a an the its their my our your every each these those this".split())
#: possessives and demonstratives that never follow an article ("the *its* metal body")
_NO_ARTICLE_BEFORE = frozenset("its their his my our your this these those every each".split())
#: word forms no edited English has ("theirselves", "each others", "could of")
_NOT_STANDARD = frozenset(["theirselves", "hisself", "themself", "itselves", "alot", "irregardless", "sideway",
                           "each others", "each another", "could of", "should of", "would of", "must of", "more better",
                           "most best", "more worse", "without never", "and fourth"])
#: words that stand for a determiner before a noun ("on *one* side of", "with *each* contour of")
_QUANTIFIERS = frozenset("one each every any no some either neither very much more most half all both".split())
#: nouns a preposition takes with no article before "of" ("in front of", "on top of", "in place of")
_OF_IDIOMS = frozenset("front top place means spite risk behalf case charge search view favor favour terms light need "
                       "danger lack sight hold care control possession part account honour honor instead course way "
                       "time lieu face middle midst edge center centre brink verge point aid order sake use fear".split())
#: WordNet noun files of concrete things, which take an article ("off *surface* of"; not "with
#: *knowledge* of")
_CONCRETE_FILES = frozenset("artifact object body location shape animal plant person".split())
#: prepositions "to" never follows ("towards *to*") and "of" never follows ("around *of*")
_NO_TO_AFTER = frozenset("toward towards into onto upon".split())
_NO_OF_AFTER = frozenset("around into onto upon across along through beneath toward towards within among amid beside "
                         "between".split())
#: directions that contradict each other side by side ("clockwise *counterclockwise*")
_OPPOSITES = [frozenset(p.split()) for p in (
    "clockwise counterclockwise", "clockwise anticlockwise", "upward downward", "upwards downwards",
    "forward backward", "forwards backwards", "inward outward", "inwards outwards", "faster slower",
    "quickly slowly", "rapidly slowly", "higher lower", "louder quieter")]
#: past tenses in "-ed" of verbs whose past WordNet's table gives another form, that are right
#: too ("speeded up", "leaded glass", "a stringed instrument", "hanged", "heaved")
_RIGHT_ED = frozenset("speeded leaded stringed hanged heaved winded thrived waked cleaved putted costed "
                      "forecasted broadcasted bidded betted knitted quitted wetted dreamed learned burned "
                      "spelled spilled spoiled smelled leaned leaped kneeled dived lighted shined weaved "
                      "strived sneaked pleaded proved sewed sawed mowed swelled shrived dwelled".split())


def _form(word: str) -> str | None:
    """The verb form ("s", "past", "ing", ...) of `word` when it reads as a verb: WordNet's corpus
    used its lemma mostly as a verb (`_verb_mostly`), or WordNet knows it as a verb and never as a
    noun or an adjective ("levitates", "hovers"); else None."""
    v = _verb_mostly(word)
    if v is not None:
        return v[1]
    v = verb_lemma(word)
    wn = default_wordnet()
    if v is None and word.endswith("s") and wn.lemmas(word, "v"):
        v = (wn.lemmas(word, "v")[0], "s")  # a verb the tagger's table lacks
    if v is not None and not wn.lemmas(word, "n") and not wn.lemmas(word, "a") and not wn.lemmas(v[0], "n"):
        return v[1]
    return None


def _verb_only(word: str) -> bool:
    """WordNet knows `word` as a verb form and never as a noun ("hovers", "levitates"; not "floats")."""
    wn = default_wordnet()
    return bool(wn.lemmas(word, "v")) and not wn.lemmas(word, "n")


def _subject_or_adverb(word: str) -> bool:
    """`word` (lower case) can stand before a bare verb in a clause: a pronoun, "to", a modal, "and",
    "then" or an adverb ("they *start*", "suddenly *start*"; not "a glossy *finish*")."""
    return word in _CLASS_WORDS["O"] or word in ("i", "to", "and", "then", "or") or word in _MODALS \
        or word in _SKIP or (word.endswith("ly") and len(word) > 4)


def _follows_verb(word: str) -> bool:
    """`word` (lower case, "" for the end of a phrase) is what follows a verb: nothing, a
    preposition, a particle, a determiner, a pronoun or an adverb."""
    return not word or word in _PHRASE_HEADS or any(word in _CLASS_WORDS[k] for k in "PRDO") \
        or (word.endswith("ly") and len(word) > 4)


def clause_verb_slips(text: str) -> list[str]:
    """Verb forms that do not fit the word that governs them: a finite or past form after "to"
    ("to *levitates*", "seen to *moved* across"; not "to *rocks*", "glued to *painted* wood": a
    noun or an adjective there), a form other than the bare verb after a modal ("can *floats*",
    "will *rolling*"; not "a *can* rolls"), a finite form after "start" / "keep" / "stop" ...
    ("start *levitates*"), a finite form after "let" / "make" / "help" and its object ("letting the
    beam *bends*"), "to" between "let" / "make" and its object and a bare verb ("makes the leaves
    *to* swirl"; not "is made to", "make it to the top"), a subordinator with a finite verb and no
    subject ("while *hovers*"), an "-ing" form with no "be" after a subject pronoun or after a
    subordinator and "it" ("they *flying*", "until it *bursting*"; not "sends it flying"), and
    "make" / "let" with an "-ing" form after a pronoun object or "to" with no object ("makes it
    *swinging*", "makes *to* grow"; not "keeps it spinning", "makes the ball roll while spinning").
    (`features.form_flips` reads a kept verb that took the "-s" after "to"; these read any verb.)
    Only words WordNet's corpus used mostly as verbs are read as verbs here."""
    a = analyze(text)
    toks = [t.lower for t in a.tokens]
    n = len(toks)
    out: list[str] = []

    def nxt(k: int) -> str:
        return toks[k + 1] if k + 1 < n and _joined(text, a.tokens, k, k + 1) else ""

    for i, w in enumerate(toks[:-1]):
        if not _joined(text, a.tokens, i, i + 1):
            continue
        x = toks[i + 1]
        f = _form(x)
        if f is None and w not in _MODALS:
            continue
        snippet = f"{a.tokens[i].text} {a.tokens[i + 1].text}"
        prev = toks[i - 1] if i > 0 and _joined(text, a.tokens, i - 1, i) else ""
        if w == "to":
            pv = verb_lemma(prev)
            takes = prev in _TO_TAKERS or (pv is not None and pv[0] in _TO_TAKERS and pv[1] != "ing")
            if (f == "s" and (takes or _verb_only(x))) or (takes and (
                    (f == "past" and x in _PAST_NOT_PP and x != "fell")
                    or (f in ("past", "pp") and x.endswith("ed") and _follows_verb(nxt(i + 1))))):
                out.append(snippet)
        elif w in _MODALS and (w != "can" or prev in _CLASS_WORDS["O"] or prev == "i") \
                and prev not in _CLASS_WORDS["D"] and not mostly_adjective(prev):
            v = verb_lemma(x)
            if v is not None and v[1] in ("s", "ing", "past") and x not in _SAME_FORM:
                out.append(snippet)  # "could *rolling*"; not "a *can* rolls", "the *will* to"
        elif w in _SUBORDINATORS:
            if f == "s" and a.tokens[i + 1].text.islower() and _verb_only(x) and _follows_verb(nxt(i + 1)):
                out.append(snippet)
        else:
            v = verb_lemma(w)
            if v is None:
                continue
            if v[0] in _ASPECT_ANY and v[1] not in ("pp", "ing") and prev not in _CLASS_WORDS["D"] \
                    and not mostly_adjective(prev) and (v[1] != "base" or _subject_or_adverb(prev)) and f in ("s", "past") and x not in _SAME_FORM \
                    and (f == "s" or x in _PAST_NOT_PP or _follows_verb(nxt(i + 1))):
                out.append(snippet)
    for i, w in enumerate(toks[:-1]):
        if not _joined(text, a.tokens, i, i + 1):
            continue
        x = toks[i + 1]
        v = verb_lemma(x)
        # a subject pronoun before an "-ing" form with no "be" ("they *flying*"; "it" is an object too: "sends it flying")
        if w in _SUBJECT_PRONOUNS and v is not None and v[1] == "ing" and not usage_counts()["n"].get(x, 0) \
                and not (i > 0 and toks[i - 1] in ("than", "as", "like")):
            out.append(f"{a.tokens[i].text} {a.tokens[i + 1].text}")
        # a subordinator, "it" and an "-ing" form ("until it *bursting*"; not "as it *were*")
        elif w in _CLAUSE_OPENERS and x == "it" and i + 2 < n and _joined(text, a.tokens, i + 1, i + 2) \
                and (verb_lemma(toks[i + 2]) or ("", ""))[1] == "ing" and not usage_counts()["n"].get(toks[i + 2], 0) \
                and not (w == "as" and i > 0 and toks[i - 1] in ("such", "well", "same")):
            out.append(" ".join(t.text for t in a.tokens[i:i + 3]))
    # "let / make" + an object + "to" + a bare verb ("makes the leaves *to* swirl"; not "is made to",
    # "make it to the top", "make their way to")
    for i, w in enumerate(toks):
        v = verb_lemma(w)
        if v is None or v[0] not in ("let", "make") or v[1] in ("past", "pp") and w != "let" or i + 2 >= n:
            continue
        k = i + 1
        if toks[k] == "to" and w != "let" and v[1] != "base" and _form(toks[k + 1]) == "base" and _joined(text, a.tokens, i, k + 1):
            out.append(" ".join(t.text for t in a.tokens[i:k + 2]))  # "makes *to* grow"
            continue
        if toks[k] in _CLASS_WORDS["O"] or toks[k] in ("me", "us"):
            k += 1
        elif toks[k] in _CLASS_WORDS["D"] or toks[k] in ("every", "each", "all", "both"):
            k += 1
            while k < n and k < i + 5 and toks[k] != "to" and toks[k] not in _PHRASE_HEADS and _joined(text, a.tokens, k - 1, k) \
                    and _form(toks[k]) != "base":  # "makes the dog *run* to catch it": the bare verb is there
                k += 1
            if k == i + 2:
                continue
        else:
            continue
        after = toks[k + 2] if k + 2 < n and _joined(text, a.tokens, k + 1, k + 2) else ""
        if k + 1 < n and toks[k] == "to" and _joined(text, a.tokens, i, k + 1) and toks[k - 1] != "way" \
                and (_form(toks[k + 1]) == "base" or ((verb_lemma(toks[k + 1]) or ("", ""))[1] == "base" and _follows_verb(after))):
            out.append(" ".join(t.text for t in a.tokens[i:k + 2]))
        elif k == i + 2 and k < n and _joined(text, a.tokens, i, k) and _ing(toks[k]) \
                and not usage_counts()["n"].get(toks[k], 0) and _follows_verb(toks[k + 1] if k + 1 < n and _joined(text, a.tokens, k, k + 1) else ""):
            out.append(" ".join(t.text for t in a.tokens[i:k + 1]))  # "makes it *swinging*": "makes it swing"
    # "let / make / help" + a determiner's noun phrase + a finite verb
    for i, w in enumerate(toks):
        v = verb_lemma(w)
        if v is None or v[0] not in _CAUSATIVE or i + 2 >= n or toks[i + 1] not in ("the", "a", "an", "its", "their", "his", "her"):
            continue
        k = i + 2
        while k < n and k < i + 5 and _joined(text, a.tokens, k - 1, k) and _form(toks[k]) is None:
            k += 1
        if k < n and k > i + 2 and _joined(text, a.tokens, i, k) and _form(toks[k]) == "s" \
                and _follows_verb(nxt(k)) and verb_lemma(toks[k - 1]) is None:
            out.append(" ".join(t.text for t in a.tokens[i:k + 1]))
    return out


def _plural_noun(word: str) -> bool:
    """`word` is a regular plural noun ("skaters", "ripples"; not "glass", "physics", "news")."""
    from direct_data.text.features import IRREGULAR_PLURALS

    if word in IRREGULAR_PLURALS:
        return True
    one = singular(word)
    return word.isalpha() and one != word and word not in _SINGULAR_S and not word.endswith(("ss", "us", "is", "ics")) \
        and bool(default_wordnet().lemmas(one, "n")) and not mostly_adjective(word) and _form(word) is None


def _count_noun(word: str) -> bool:
    """`word` is a singular noun with a plural of its own, used mostly as a noun ("side", "drop";
    not "water" or "glass", which WordNet's corpus or spelling cannot tell from a mass noun)."""
    c = usage_counts()
    n = c["n"].get(word, 0)
    return word.isalpha() and singular(word) == word and n > c["v"].get(word, 0) and n > c["a"].get(word, 0) \
        and not word.endswith(("s", "ss", "ing")) and word not in _ANY_NUMBER and word not in ("people", "cattle", "police")


def _ing(word: str) -> bool:
    """`word` is a verb's "-ing" form (the tagger's table, or WordNet's verbs: "progressing")."""
    v = verb_lemma(word)
    return (v is not None and v[1] == "ing") or (v is None and word.endswith("ing") and bool(default_wordnet().lemmas(word, "v")))


def _adverb_only(word: str) -> bool:
    """WordNet knows `word` as an adverb and as nothing else ("slowly", "enormously"; not "early", "daily")."""
    wn = default_wordnet()
    return word in wn.lemmas(word, "r") and not any(wn.lemmas(word, p) for p in ("n", "v", "a"))


def _noun_only_here(word: str) -> bool:
    """`word` reads as a noun: WordNet's corpus used it mostly as one, and it is no verb form or
    adjective ("velocity", "force"; not "forward", "rising")."""
    c = usage_counts()
    n = c["n"].get(word, 0)
    return n > 0 and n > c["v"].get(word, 0) and n > c["a"].get(word, 0) and verb_lemma(word) in (None, (word, "base")) \
        and not mostly_adjective(word) and word not in STOPWORDS


def _comparative(word: str) -> bool:
    """`word` is an adjective's or adverb's "-er" form ("faster", "bigger"; not "water", "slender")."""
    wn = default_wordnet()
    return word.endswith("er") and len(word) > 4 and bool(wn.lemmas(word, "a")) and word not in wn.lemmas(word, "a")


def _adverb_of(adjective: str) -> set[str]:
    """The "-ly" adverbs spelled from `adjective` ("violent" -> "violently", "easy" -> "easily",
    "gentle" -> "gently", "tragic" -> "tragically")."""
    w = adjective
    out = {w + "ly"}
    if w.endswith("y"):
        out.add(w[:-1] + "ily")
    if w.endswith("le"):
        out.add(w[:-1] + "y")
    if w.endswith("ic"):
        out.add(w + "ally")
    return out


def word_slips(text: str) -> list[str]:
    """Words that do not fit beside each other, or are no English form: a word beside its own
    adverb ("violent *violently*"), two directions that contradict each other side by side
    ("clockwise *counterclockwise*"), a determiner before an article or an article before a
    possessive ("the same *a*", "*a the*", "the *its*"), "it's" after a preposition ("above *it's*
    platter"), "then" for "than" after a comparative ("less *then* a second"), "so much" before an
    adjective ("so much *dense* that"), "more" / "most" before a comparative or superlative ("more
    *faster*"), an "-ly" adverb English does not have made from an adjective ("*fastly*"), a
    regular past of a verb whose past is irregular ("*throwed*", "*swimmed*"; not "speeded up",
    "leaded glass"), a few forms no edited text has (`_NOT_STANDARD`: "theirselves", "each
    others", "without never"), a subject pronoun after a preposition ("on *they* back"), "much"
    before a plural ("much *skaters*"), "both" / "a few" before a singular that ends its phrase
    ("both *side*."; not "both land and water"), "*a such*", "has" before an "-ing" form that is no
    adjective ("has *progressing* through"; not "has rolling hills"), "very" or "so" before a
    comparative ("very *more*", "so *deeper*"), "as ... *than*" / "as ... *like*", "to" or "of"
    after a preposition that never takes it ("towards *to*", "around *of*"), "there is" before a
    plural ("there is *ripples*"), "it's" before a plural noun phrase ("showing *it's* inner
    segments"), an adverb only in the slot of an adjective before a noun ("a very *slowly*
    velocity"), and a concrete singular noun with no article between a preposition and "of" ("bounces
    off *surface* of the water"; not "in front of", "on top of", "on one side of", "with knowledge
    of")."""
    from direct_data.text.language import is_english_word
    a = analyze(text)
    toks = [t.lower for t in a.tokens]
    n = len(toks)
    wn = default_wordnet()
    out: list[str] = []
    for i, w in enumerate(toks):
        joined = i + 1 < n and _joined(text, a.tokens, i, i + 1)
        x = toks[i + 1] if joined else ""
        if x and min(len(w), len(x)) >= 4 and (x in _adverb_of(w) or w in _adverb_of(x)) and x.isalpha() and w.isalpha():
            out.append(f"{a.tokens[i].text} {a.tokens[i + 1].text}")
        elif x and frozenset((w, x)) in _OPPOSITES:
            out.append(f"{a.tokens[i].text} {a.tokens[i + 1].text}")
        elif (x in ("a", "an", "the") and (w in _NO_ARTICLE_AFTER or (w == "same" and i > 0 and toks[i - 1] == "the"))) \
                or (w in ("a", "an", "the") and x in _NO_ARTICLE_BEFORE):
            out.append(f"{a.tokens[i].text} {a.tokens[i + 1].text}")  # "the same *a*", "the *its*"
        elif x in ("it's", "it’s") and (w in _CLASS_WORDS["P"] or w in _PHRASE_HEADS) and w not in _CLAUSE_OPENERS | {"and", "or", "than"}:
            out.append(f"{a.tokens[i].text} {a.tokens[i + 1].text}")  # "above *it's* platter": "its"
        elif x == "then" and (w in ("less", "more", "rather", "other") or (_comparative(w) and toks[i + 2:i + 3] in (["a"], ["an"], ["ever"], ["before"], ["usual"]))):
            out.append(f"{a.tokens[i].text} {a.tokens[i + 1].text}")  # "less *then* a second": "than"
        elif w in ("much",) and i > 0 and toks[i - 1] in ("so", "too", "very") and x and mostly_adjective(x) \
                and not _comparative(x) and _follows_verb(toks[i + 2] if i + 2 < n and _joined(text, a.tokens, i + 1, i + 2) else ""):
            out.append(f"{a.tokens[i].text} {a.tokens[i + 1].text}")  # "so much *dense* that"
        elif x in _SUBJECT_PRONOUNS and w in _CLASS_WORDS["P"] and w not in ("like", "as", "to"):
            out.append(f"{a.tokens[i].text} {a.tokens[i + 1].text}")  # "on *they* back": "their"
        elif w == "much" and x and _plural_noun(x):
            out.append(f"{a.tokens[i].text} {a.tokens[i + 1].text}")  # "much *skaters*"
        elif (w == "both" or (w == "few" and i > 0 and toks[i - 1] == "a")) and x and _count_noun(x) \
                and (i + 2 >= n or not _joined(text, a.tokens, i + 1, i + 2) or toks[i + 2] in _CLASS_WORDS["P"]):
            out.append(f"{a.tokens[i].text} {a.tokens[i + 1].text}")  # "both *side*", "a few *drop*"; not "both land and water"
        elif w in ("a", "an") and x in ("such",):
            out.append(f"{a.tokens[i].text} {a.tokens[i + 1].text}")  # "*a such* forceful chop"
        elif w in _HAVE and w != "having" and x and _ing(x) and not usage_counts()["n"].get(x, 0) \
                and _follows_verb(toks[i + 2] if i + 2 < n and _joined(text, a.tokens, i + 1, i + 2) else ""):
            out.append(f"{a.tokens[i].text} {a.tokens[i + 1].text}")  # "has *progressing* through"
        elif (w == "very" and x and (x == "more" or _comparative(x))) or (w == "so" and x and _comparative(x)):
            out.append(f"{a.tokens[i].text} {a.tokens[i + 1].text}")  # "very *more*", "so *deeper*"
        elif w == "as" and x and (mostly_adjective(x) or x.endswith("ly")) and i + 2 < n and toks[i + 2] in ("than", "like") \
                and _joined(text, a.tokens, i, i + 2):
            out.append(" ".join(t.text for t in a.tokens[i:i + 3]))  # "as high *than*"
        elif (x == "to" and w in _NO_TO_AFTER) or (x == "of" and w in _NO_OF_AFTER):
            out.append(f"{a.tokens[i].text} {a.tokens[i + 1].text}")  # "towards *to*", "around *of*"
        elif w == "there" and x in ("is", "was") and i + 2 < n and _joined(text, a.tokens, i + 1, i + 2):
            k = i + 2
            while k < n - 1 and k < i + 5 and mostly_adjective(toks[k]) and _joined(text, a.tokens, k, k + 1):
                k += 1
            if _plural_noun(toks[k]) and toks[k] not in ("lots", "plenty") and (k + 1 >= n or toks[k + 1] != "of"):
                out.append(" ".join(t.text for t in a.tokens[i:k + 1]))  # "there is *ripples*"
        elif x in ("it's", "it’s") and i + 2 < n and _joined(text, a.tokens, i + 1, i + 2):
            k = i + 2
            while k < n - 1 and k < i + 4 and mostly_adjective(toks[k]) and _joined(text, a.tokens, k, k + 1):
                k += 1
            if _plural_noun(toks[k]) and (k + 1 >= n or not _joined(text, a.tokens, k, k + 1) or toks[k + 1] in _PHRASE_HEADS):
                out.append(" ".join(t.text for t in a.tokens[i + 1:k + 1]))  # "showing *it's* inner segments": "its"
        elif w.endswith("ly") and len(w) > 4 and x and _adverb_only(w) and _noun_only_here(x) and i > 0 \
                and (toks[i - 1] in _CLASS_WORDS["D"] or toks[i - 1] in ("a", "an", "very")) \
                and (i + 2 >= n or not _joined(text, a.tokens, i + 1, i + 2) or toks[i + 2] in _PHRASE_HEADS or toks[i + 2] in _CLASS_WORDS["P"]):
            out.append(f"{a.tokens[i].text} {a.tokens[i + 1].text}")  # "a very *slowly* velocity", "with *enormously* force"
        if w in _CLASS_WORDS["P"] and w not in ("of", "like") and x and x not in _QUANTIFIERS:
            k = i + 1
            while k < n - 1 and k < i + 3 and mostly_adjective(toks[k]) and _joined(text, a.tokens, k, k + 1):
                k += 1
            if k + 2 < n and _joined(text, a.tokens, i, k + 1) and toks[k + 1] == "of" and toks[k + 2] in _CLASS_WORDS["D"] \
                    and a.tokens[k].text.islower() and toks[k] not in _OF_IDIOMS and _count_noun(toks[k]) \
                    and noun_file(toks[k]) in _CONCRETE_FILES:
                out.append(" ".join(t.text for t in a.tokens[i:k + 2]))  # "bounces off *surface* of the water": "the surface"
        if w in _NOT_STANDARD or (x and f"{w} {x}" in _NOT_STANDARD):
            out.append(a.tokens[i].text if w in _NOT_STANDARD else f"{a.tokens[i].text} {a.tokens[i + 1].text}")
        elif w in ("more", "most") and x.endswith(("er", "est")) and len(x) > 4:
            if (_comparative(x) or (x.endswith("est") and wn.lemmas(x, "a") and x not in wn.lemmas(x, "a"))) and not wn.lemmas(x, "n"):
                out.append(f"{a.tokens[i].text} {a.tokens[i + 1].text}")  # "more *faster*", not "more *water*"
        if not w.isalpha() or not a.tokens[i].text.islower() or len(w) < 5:
            continue
        if w.endswith("ly") and not is_english_word(w) and w[:-2] in wn.lemmas(w[:-2], "r") and wn.lemmas(w[:-2], "a"):
            out.append(a.tokens[i].text)
        elif w.endswith("ed") and w not in _RIGHT_ED and verb_lemma(w) is None:
            for stem in dict.fromkeys((w[:-2], w[:-1], w[:-3] + "y", w[:-3])):
                if len(stem) >= 2 and (usage_counts()["v"].get(stem, 0) > 0):
                    past = inflect(stem, "past")
                    if past and not past.endswith("ed") and past != w and inflect(stem, "pp") != w:
                        out.append(a.tokens[i].text)
                        break
    return out


#: determiners that open a conjunct of a coordinated subject ("*A* cat and *a* dog")
_CONJUNCT_OPENERS = frozenset("a an the this that his her its their my our your one two three four five".split())


def coordinated_subject_slips(text: str) -> list[str]:
    """A coordinated subject that opens a sentence, each conjunct with its determiner, followed by
    a verb in the singular ("A cat and a dog *runs* across"; not "A cat and a dog run", "A cat
    chases a mouse and a dog runs"). Only words that read as verbs (`_form`) are read as the verb."""
    a = analyze(text)
    toks = [t.lower for t in a.tokens]
    n = len(toks)
    out: list[str] = []
    for i in range(n):
        if toks[i] not in _CONJUNCT_OPENERS or not (i == 0 or any(ch in text[a.tokens[i - 1].end:a.tokens[i].start] for ch in ".;:!?")):
            continue
        k = i + 1
        while k < n and k < i + 5 and toks[k] != "and" and _joined(text, a.tokens, k - 1, k) and _form(toks[k]) is None:
            k += 1
        if k >= n or toks[k] != "and" or k == i + 1 or not _joined(text, a.tokens, i, k) or k + 1 >= n \
                or toks[k + 1] not in _CONJUNCT_OPENERS:
            continue
        j = k + 2
        while j < n and j < k + 6 and _joined(text, a.tokens, j - 1, j) and _form(toks[j]) is None and toks[j] not in _PHRASE_HEADS:
            j += 1
        if j < n and j > k + 2 and _joined(text, a.tokens, k, j) and _form(toks[j]) == "s" and toks[j] not in ("is", "was", "has"):
            out.append(" ".join(t.text for t in a.tokens[i:j + 1]))
    return out



#: nouns that take a plural verb in the singular, or whose plural looks the same ("the crew are",
#: "the fish are")
_ANY_NUMBER = frozenset("fish sheep deer aircraft salmon trout cod bison moose swine offspring "
                        "staff crew team family audience group couple pair crowd herd flock swarm school majority "
                        "army class committee jury public rest remainder number bulk lot plenty half none series "
                        "species".split())
#: determiners of more than one thing ("*Two* people *is*")
_MANY = frozenset("two three four five six seven eight nine ten dozens hundreds many several both all these those".split())
#: determiners of one thing ("*a* ... *are*")
_ONE = frozenset("a an this that each every another".split())


def be_number_slips(text: str) -> list[str]:
    """A form of "be" or "have" right after a noun phrase of the other number: a plural noun before
    "is" / "was" / "has" ("the clothes *is*", "Two people *is*", "the pieces *was*"), and a noun
    after "a" / "this" / "each" ... before "are" / "were" / "have" ("a glass toy, which *were*" is
    not read; "a wooden spoon *are*"). Not read: a noun after a preposition ("the colour of the
    pieces is"), nouns of either number (`_ANY_NUMBER`), and "-s" nouns that are singular ("the
    lens is", "physics is")."""
    from direct_data.text.features import IRREGULAR_PLURALS

    a = analyze(text)
    toks = [t.lower for t in a.tokens]
    n = len(toks)
    out: list[str] = []
    for j in range(1, n):
        b = toks[j]
        if b not in ("is", "was", "has", "are", "were", "have") or not _joined(text, a.tokens, j - 1, j):
            continue
        x = toks[j - 1]
        if x in _ANY_NUMBER or not x.isalpha() or verb_lemma(x) is not None and x not in IRREGULAR_PLURALS | {"clothes"}:
            continue
        plural = x in IRREGULAR_PLURALS or x == "clothes" or (
            singular(x) != x and x not in _SINGULAR_S and not x.endswith(("ss", "us", "is", "ics"))
            and bool(default_wordnet().lemmas(singular(x), "n")))
        # the noun phrase's first word: back over adjectives and nouns
        k = j - 2
        while k >= 0 and j - 1 - k <= 3 and _joined(text, a.tokens, k, j - 1) and toks[k] not in STOPWORDS \
                and toks[k] not in _MANY and toks[k] not in _PHRASE_HEADS and verb_lemma(toks[k]) is None:
            k -= 1
        if k < 0 or not _joined(text, a.tokens, k, j - 1):
            continue
        opener = toks[k]
        if opener in _PHRASE_HEADS or opener in _CLASS_WORDS["P"] or opener in ("and", "or", "of") or (
                k > 0 and _joined(text, a.tokens, k - 1, k) and (toks[k - 1] in _PHRASE_HEADS or toks[k - 1] in _CLASS_WORDS["P"])):
            continue  # "the colour of the pieces is", "a cat and the dogs are"
        if plural and b in ("is", "was", "has") and (opener in _CLASS_WORDS["D"] or opener in _MANY) and opener not in _ONE:
            out.append(" ".join(t.text for t in a.tokens[k:j + 1]))
        elif not plural and b in ("are", "were", "have") and opener in _ONE and not x.endswith("s"):
            out.append(" ".join(t.text for t in a.tokens[k:j + 1]))
    return out
