"""Subject-verb agreement across a distance: the slips an instruction-tuned 7B model makes in a
long rewrite ("A chisel made of soft lead *break*", "the tea that seeps out of the bag
*disperse*", "One person, moving at lightning speed, *tie*").

`features.agreement_errors` (a feature of the learnt model) reads only a subject right before
its verb. This module reads the farther ones, cheaply and without a parser, from the tagger's
tokens, the verb forms `features.verb_lemma` knows and WordNet's usage counts. The validator
rejects a negative as ``ungrammatical`` before its model when the negative has a snippet here
that its prompt has not (`direct_data.text.validator._distant_agreement`); the model's features
and artefact are unchanged.
"""

from __future__ import annotations

from direct_data.text.axes import STOPWORDS
from direct_data.text.features import (
    _CLASS_WORDS,
    _NOT_FINITE_BEFORE,
    _NOT_PLURAL,
    _PHRASE_HEADS,
    _PL_PRONOUNS,
    _PLURAL_FINITE,
    _SG_DETERMINERS,
    _SG_PRONOUNS,
    _SINGULAR_FINITE,
    _SKIPPABLE,
    IRREGULAR_PLURALS,
    _adverb,
    _in_phrase,
    _joined,
    _noun_use,
    _number,
    _verb_complement,
    verb_lemma,
)
from direct_data.text.tagger import analyze, inflect, singular
from direct_data.text.wordnet import mostly_adjective, usage_counts

#: words between a noun and "of" / "with" / "in" / "from" that keep the noun the phrase's head ("a
#: chisel *made of* lead", "a mug *covered in* paint", "a ball *made out of* glass")
_POSTMOD_VERBS = frozenset("made covered filled coated full carved built wrapped dipped soaked packed".split())
_POSTMOD_PREPS = frozenset("of with from in".split())
#: words after which a determiner starts a clause's subject
_SUBJECT_OPENERS = frozenset("and while as when then but so until before after because where if once how why whether "
                              "whereas although though since unless whenever".split())
#: determiners whose noun is singular / plural whatever its form
_PL_DETERMINERS = frozenset("these those both several many two three four five six seven eight nine ten".split())
#: verbs whose past tense and participle are their base form, which `inflect` spells regularly
_SAME_PAST = frozenset("cast forecast broadcast read bid rid shed slit quit thrust upset bet cost hurt knit wed spit fit "
                       "beat set split shut".split())
#: "as if it *were*", "even though he *were*", "as it *were*" (a subjunctive or an idiom, not a slip)
_SUBJUNCTIVE_BEFORE = frozenset("if though wish as".split())
#: adverbs that may stand between a subject and its verb besides `_SKIPPABLE` ("the layers *never* blend")
_FREQUENCY_ADVERBS = frozenset("never always often sometimes rarely seldom ever usually soon not".split())


def _adjective_shape(word: str) -> bool:
    """An adjective by its ending that WordNet's corpus never used as a noun ("tactical")."""
    return word.endswith(("al", "ous", "ful", "ive", "ic", "ish", "less", "able", "ible", "ary")) and len(word) > 4 \
        and not usage_counts()["n"].get(word, 0) and verb_lemma(word) is None


#: pronouns that follow a verb, not a noun ("make *it* streak")
_OBJECT_PRONOUNS = frozenset("it them him us me itself themselves himself herself".split())
#: words that end a clause's run of words before its verb ("the twigs drifting up *whenever* it lets go")
_CLAUSE_STOPS = frozenset("whenever wherever whereas although though unless since because whose whom that which who".split())
#: words an interrupter between commas may open on besides participles, prepositions and -ly
#: adverbs ("the Corgi, *whose* paws ..., float"; "the dog, *its* coat drenched ..., shake")
_INTERRUPTER_OPENERS = frozenset("which who whose as if when while though although because once instead unlike like "
                                 "along together still even its their his her".split())
#: pronouns whose "of" phrase names what they count ("each of the plates", "some of the animals")
_PARTITIVES = frozenset("each one either neither some many most several both all few".split())
#: plural heads whose "of" phrase decides the verb ("lots of water *flows*")
_QUANTITY_PLURALS = frozenset("lots loads tons plenty heaps dozens hundreds thousands millions scores bunches "
                              "kinds sorts types".split())
#: nouns plural in meaning without an "s" ("cattle move") or either ("the staff are")
_COLLECTIVE = frozenset("staff crew team family audience crowd group herd flock swarm".split())
#: plurals without an "s" besides `IRREGULAR_PLURALS`
_PLURAL_WORDS = frozenset("cattle police poultry livestock clergy dice".split())
#: prepositions: a word right after one is its object, not a verb ("between *strikes*")
_PREPOSITIONS = _CLASS_WORDS["P"] | (_PHRASE_HEADS - {"and", "or"})


def distant_agreement_errors(text: str, known_verbs: frozenset[str] = frozenset()) -> list[str]:
    """Finite verbs that disagree with a subject `agreement_errors` does not read, as "subject ...
    verb" snippets, in order:

    * a clause subject with a phrase after it ("A chisel *made of* soft lead *break*", "A tennis
      ball *with a steel core* *are*", "A sheet *of glass* *are*"): a determiner that opens the
      text or a clause, the head noun, "made of" / "with" / "of" / "covered in" and a noun phrase,
      then the verb. The verb must disagree with the head and with the phrase's noun (so "a group
      *of birds fly*" passes), and a bare verb must be followed by what follows a verb ("... lead
      *break* a"), not by a noun;
    * a relative clause's verb that disagrees with the noun it is about, for any verb ("pieces
      that *floats*", "a draft that *bend* the stream"); where that noun ends a prepositional
      phrase, the verb must disagree with the noun before the preposition too ("an orange over 54
      days that *does*" passes), and "that" before a bare verb is read only when what follows is
      what follows a verb ("that bend in the road" is a noun phrase);
    * "was" / "were" against a pronoun or a determiner's noun right before it ("they *was*", "the
      pins *was*"; not "as if it *were*");
    * a clause's subject, a determiner and its noun, right before a lexical verb that
      `agreement_errors` leaves alone as a possible noun compound ("so that the whole instrument
      *shudder* under"), when the word is not one of `known_verbs` (the validator passes the
      prompt's words: "a yellow rubber *duck* on" stays a noun), is mostly a verb in WordNet, and
      no other finite verb follows in the clause;
    * a subject that opens a sentence or a clause (after ". ; :", a comma, "and", "while", "how",
      "so that", "whose" ...) with a long phrase before its verb: a plural head's "of" phrase
      ("the sides of the bottle *splits*"; not "lots of water *flows*"), "each of" / "some of"
      and a noun phrase ("each of the lampposts *spin*"), a relative clause before the main verb
      ("the tea that seeps out of the bag *disperse*", "the speed at which it travels *make*"), a
      participle phrase ("A glass cup sitting on the edge of a table *float*"), or an interrupter
      between commas that opens on a participle, a preposition, a relative pronoun, a
      subordinator, "its" or an adverb ("One person, moving at lightning speed, *tie*"; not an
      appositive or a list: "the sun, a ball of fire, rises"). The verb is the first finite verb
      after the phrase: an auxiliary, or a present-tense form that is no noun there (not after a
      determiner, adjective, preposition or another verb: "to gain *speed*", "between
      *strikes*"; not mostly a noun in WordNet, unless an interrupter makes a verb due; a bare
      form only with a verb's complement after it). A plural verb after "X and" may have two
      subjects and is not read.

    A word of `known_verbs` is not read as a verb in the last two kinds.

    Cheap and local like `agreement_errors`; the validator counts the snippets a negative adds
    over its prompt, so a construction misread in both cancels out.
    """
    reader = _Reader(text, known_verbs)
    reader.long_subjects()
    reader.verb_scan()
    return reader.out


class _Reader:
    """One text read for `distant_agreement_errors`: its tokens and the cheap word-class tests
    the two passes share (`long_subjects`, then `verb_scan`)."""

    def __init__(self, text: str, known_verbs: frozenset[str]) -> None:
        self.text, self.known_verbs = text, known_verbs
        self.a = analyze(self.text)
        self.toks = [t.lower for t in self.a.tokens]
        self.n = len(self.toks)
        self.out: list[str] = []
        self.read: set[int] = set()

    def joined(self, i: int, j: int) -> bool:
        return _joined(self.text, self.a.tokens, i, j)

    def noun_number(self, k: int, np_head: bool = False) -> str | None:
        """Number of word k read as a noun: not a function word, adverb or adjective, and not a
        verb form unless a determiner or a modifier stands before it ("the *pins*", "soft *lead*")
        or it is known to head a noun phrase (`np_head`: "a fallen *leaf*")."""
        x = self.toks[k]
        if k < 0 or not x.isalpha() or x in STOPWORDS or _adverb(x) or x in _FREQUENCY_ADVERBS or x in _NOT_FINITE_BEFORE \
                or x == "cannot" or mostly_adjective(x) \
                or any(x in c for c in _CLASS_WORDS.values()):
            return None
        v = verb_lemma(x)
        if v is not None and not np_head and (v[1] not in ("s", "base") or k == 0 or not (
                self.toks[k - 1] in _CLASS_WORDS["D"] or self.toks[k - 1] in _SG_DETERMINERS or self.toks[k - 1] in _PL_DETERMINERS
                or mostly_adjective(self.toks[k - 1]) or self.toks[k - 1].isdigit() or "-" in self.toks[k - 1])):
            return None
        if x in _NOT_PLURAL or x.endswith(("ics", "ss", "us", "is")):
            return "s"
        if x in IRREGULAR_PLURALS or x in _PLURAL_WORDS:
            return "p"
        return "p" if singular(x) != x else "s"

    def complement_after(self, j: int) -> bool:
        """What follows word j is what follows a verb (the end of a clause, a preposition, a
        determiner, an adverb; "deep" or "hard" before a preposition), not a noun."""
        return j + 1 >= self.n or not self.joined(j, j + 1) or _verb_complement(self.toks, j + 1, self.text, self.a.tokens) \
            or self.toks[j + 1] in _OBJECT_PRONOUNS or self.toks[j + 1] in _PREPOSITIONS or (
            j + 2 < self.n and self.joined(j + 1, j + 2) and self.toks[j + 2] in _CLASS_WORDS["P"] | _CLASS_WORDS["D"]
            and verb_lemma(self.toks[j + 1]) is None and (mostly_adjective(self.toks[j + 1]) or self.toks[j + 1] in _SKIPPABLE))

    def clause_start(self, d: int) -> bool:
        """Position d opens a sentence (after ". ! ? ; :", not a comma: "the start, the deep red eclipse
        phase") or a clause ("and", "while", "so that")."""
        if d == 0:
            return True
        gap = self.text[self.a.tokens[d - 1].end:self.a.tokens[d].start]
        return any(ch in gap for ch in ".!?;:") or (self.toks[d - 1] in _SUBJECT_OPENERS or self.toks[d - 1] == "that") and "," not in gap

    def finite_after(self, j: int) -> bool:
        """Another finite verb after word j in its clause ("the water *flow* from the tap *is*
        ...": then word j is a noun)."""
        for k in range(j + 1, self.n):
            if not self.joined(k - 1, k) or self.toks[k] in _CLASS_WORDS["C"] or self.toks[k] in ("that", "who"):
                return False
            if self.toks[k] in _SINGULAR_FINITE | _PLURAL_FINITE | {"was", "were"} or (
                    _number(self.toks[k]) is not None and not _noun_use(self.a, k)) or (verb_lemma(self.toks[k]) or ("", ""))[1] == "past":
                return True
        return False

    def simple_subject(self, i: int, j: int, need: str, have: str) -> bool:
        """A clause's subject, a determiner and its noun, right before a lexical verb that
        disagrees with it and has a verb's complement after it ("so that the whole instrument
        *shudder* under", "A second match *hover* diagonally", "the brush *tangle* and snap"),
        where no other finite verb follows in the clause (not "the water *flow* from the tap is")."""
        if self.toks[j] in _SINGULAR_FINITE | _PLURAL_FINITE or have == need or j + 1 >= self.n or not self.joined(j, j + 1):
            return False
        if need == "p" and (self.toks[j] in _SAME_PAST or inflect(verb_lemma(self.toks[j])[0], "past") == self.toks[j]):  # type: ignore[index]
            return False
        nxt = self.toks[j + 1]
        verbs_joined = nxt in ("and", "or") and j + 2 < self.n and (verb_lemma(self.toks[j + 2]) or ("", ""))[1] in ("s", "base")
        if not (nxt in _CLASS_WORDS["P"] or nxt in _CLASS_WORDS["R"] or nxt in _CLASS_WORDS["D"] or verbs_joined
                or (_adverb(nxt) and nxt not in _SKIPPABLE)):
            return False  # "tangle *and snap*", not "a teddy bear *and a* frisbee"
        lemma = verb_lemma(self.toks[j])[0]  # type: ignore[index]
        counts = usage_counts()
        if counts["n"].get(lemma, 0) >= counts["v"].get(lemma, 0) > 0 or (lemma not in counts["v"] and lemma in counts["n"]):
            return False  # mostly a noun ("the eclipse *phase* with"): a compound
        d, steps = i - 1, 0
        while d >= 0 and steps < 3 and self.toks[d] not in _CLASS_WORDS["D"] and self.toks[d] not in _SG_DETERMINERS \
                and self.toks[d] not in STOPWORDS and self.joined(d, d + 1) and (verb_lemma(self.toks[d]) or ("", "pp"))[1] in ("past", "pp"):
            d -= 1
            steps += 1
        if d < 0 or self.toks[d] not in ("a", "an", "the", "each", "every", "this") or not self.joined(d, i) or not self.clause_start(d):
            return False
        if self.toks[d] != "the" and have == "p":
            return False  # "a pair", misread
        if need == "p" and d > 0 and self.toks[d - 1] in ("and", "or", "nor"):
            return False  # "Buses, cars, and a motorcyclist appear": a coordinated subject
        return self.toks[i] not in _COLLECTIVE and not self.finite_after(j)

    def finite_number(self, k: int, after_verb: bool = False, expected: bool = False) -> str | None:
        """"s" / "p" when word k reads as a finite verb of a clause whose subject came before:
        an auxiliary, or a present-tense verb that is mostly a verb in WordNet, not right after a
        determiner, adjective or "to" / a modal, and (a bare form) with a verb's complement after
        it; else None. `after_verb`: word k may follow a verb (a relative clause's verb, then the
        main verb: "the speed at which it travels *make*"). `expected`: a verb is due at word k
        (after an interrupter between commas), so a word that is a noun as often as a verb is
        read as a verb ("the cube, instead of tumbling, *slide*")."""
        w = self.toks[k]
        if w in ("was", "were"):
            return "s" if w == "was" else "p"
        need = _number(w)
        if need is None or k == 0:
            return None
        prev = self.toks[k - 1] if self.joined(k - 1, k) else ""
        if prev in _NOT_FINITE_BEFORE or prev in _CLASS_WORDS["D"] or prev in _SG_DETERMINERS or prev in _PREPOSITIONS \
                or w in _CLASS_WORDS["P"] or (mostly_adjective(prev) and prev not in _CLASS_WORDS["R"]) or _adjective_shape(prev) \
                or (not after_verb and prev and self.reads_as_verb(k - 1)):
            return None  # a noun after a determiner, adjective, preposition or verb ("to gain *speed*", "the beating *stick*")
        if w in _SINGULAR_FINITE | _PLURAL_FINITE:
            return need
        lemma = verb_lemma(w)[0]  # type: ignore[index]
        counts = usage_counts()
        if not expected and counts["n"].get(lemma, 0) >= counts["v"].get(lemma, 0) and counts["n"].get(lemma, 0) \
                and prev not in _SG_PRONOUNS | _PL_PRONOUNS | {"who", "which", "that"}:
            return None  # mostly a noun: "the water *spill*", "wiping away *dust*"
        if need == "p" and (w in _SAME_PAST or inflect(lemma, "past") == w or k + 1 >= self.n or not self.joined(k, k + 1)
                            or not self.complement_after(k)):
            return None  # a bare form needs a verb's complement, not the end ("hanging by a string *loop*.")
        return need

    def reads_as_verb(self, k: int) -> bool:
        """Word k is a verb form read as a verb where it stands: a participle, or a word mostly
        a verb in WordNet not right after a determiner, adjective or preposition ("to *gain*",
        "the *beating*"; not "full *speed*")."""
        x = self.toks[k]
        v = verb_lemma(x)
        if v is None or x in _SINGULAR_FINITE | _PLURAL_FINITE:
            return False
        if v[1] in ("ing", "pp", "past"):
            return True
        before = self.toks[k - 1] if k > 0 and self.joined(k - 1, k) else ""
        return self.verb_dominant(x) and not (before in _CLASS_WORDS["D"] or before in _PREPOSITIONS or mostly_adjective(before))

    def next_finite(self, k: int, pronoun_ok: bool = False, after_verb: bool = False) -> int | None:
        """Position of the first finite verb from word k on, in the same clause (not past a
        comma, a conjunction, a relative pronoun or, unless `pronoun_ok`, a pronoun that would be
        another subject: "the twigs drifting up whenever *it* lets go")."""
        for m in range(k, self.n):
            if m > 0 and not self.joined(m - 1, m):
                return None
            if self.toks[m] in _CLASS_WORDS["C"] or self.toks[m] in _SUBJECT_OPENERS or self.toks[m] in _CLAUSE_STOPS \
                    or (self.toks[m] in _SG_PRONOUNS | _PL_PRONOUNS and not pronoun_ok):
                return None
            if self.finite_number(m, after_verb and m == k) is not None:
                return m
        return None

    def noun_phrase_end(self, k: int) -> int:
        """Position right after the noun phrase that starts at word k (determiners, numbers,
        modifiers, nouns; at most 6 words)."""
        m, noun_seen = k, False
        while m < self.n and m < k + 6 and (m == k or self.joined(m - 1, m)):
            x = self.toks[m]
            v = verb_lemma(x)
            if (not noun_seen and (x in _CLASS_WORDS["D"] or x in _PL_DETERMINERS or x.isdigit())) or x.endswith(("'s", "’s")):
                m += 1
                continue
            noun_seen = True
            if not x.replace("-", "").isalpha() or x in STOPWORDS or any(x in c for c in _CLASS_WORDS.values()) or _adverb(x):
                break
            if v is not None and m > k and self.verb_dominant(x) and self.noun_number(m - 1) is not None:
                break
            m += 1
        return m

    def verb_dominant(self, x: str) -> bool:
        """Word x is a verb form whose lemma WordNet's corpus used more as a verb than as a noun."""
        v = verb_lemma(x)
        if v is None:
            return False
        counts = usage_counts()
        return counts["v"].get(v[0], 0) > counts["n"].get(v[0], 0)

    def head_of_subject(self, d: int) -> tuple[int, str] | None:
        """(position, number) of the head noun of a subject that starts at word d: a determiner
        (or none, for a bare plural, "Bits of the food", or a capitalised first word, "Silk
        curtain"), modifiers, possessives ("the turbine's"), the noun."""
        start, fixed = d, None
        if self.toks[d] in ("a", "an", "each", "every", "this", "one", "another"):
            start, fixed = d + 1, "s"
        elif self.toks[d] in _PL_DETERMINERS:
            start, fixed = d + 1, "p"
        elif self.toks[d] in ("the", "its", "their", "his", "her", "our", "my", "your"):
            start = d + 1
        h = None
        for k in range(start, min(self.n, start + 6)):
            if k > start and not self.joined(k - 1, k):
                break
            x = self.toks[k]
            v = verb_lemma(x)
            if x.endswith(("'s", "’s")):
                h = None  # "the turbine's blades": the noun comes after
                continue
            if not x.replace("-", "").isalpha() or x in STOPWORDS or any(x in c for c in _CLASS_WORDS.values()) \
                    or x in _FREQUENCY_ADVERBS or _adverb(x):
                break
            if v is not None and h is not None and v[1] not in ("past", "pp") and self.verb_dominant(x) \
                    and self.noun_number(h) is not None and not mostly_adjective(self.toks[h]):
                break  # a verb after the noun ("the ball *rolls*"; not "a steady *wind*", "a domino *block*")
            if v is not None and (v[1] == "ing" or (v[1] in ("past", "pp") and h is not None and self.noun_number(h, np_head=True) is not None)):
                break  # a participle after the noun ("a domino block *placed* on"), not before it ("a *fallen* leaf")
            h = k
        if h is None or mostly_adjective(self.toks[h]) or self.toks[h] in _COLLECTIVE or self.toks[h] in _QUANTITY_PLURALS:
            return None
        num = self.noun_number(h, np_head=True)
        if num is None:
            return None
        if fixed is not None:
            if fixed != num and fixed == "s":
                return None  # "a pair", "one of": misread
            num = fixed
        elif h == d and num != "p":
            first = d == 0 or any(ch in self.text[self.a.tokens[d - 1].end:self.a.tokens[d].start] for ch in ".!?")
            if not (first and self.a.tokens[d].text[:1].isupper() and verb_lemma(self.toks[d]) is None and not self.toks[d].endswith("s")
                    and h + 1 < self.n and "," in self.text[self.a.tokens[h].end:self.a.tokens[h + 1].start]):
                return None  # a bare singular: maybe no subject at all (but "Silk curtain, gathered ..., slide")
        return h, num

    def verb_after(self, k: int) -> int | None:
        """Position of the verb of a subject whose noun phrase ends right before word k, past
        one relative clause ("that seeps out of the bag *disperse*", "at which it travels
        *make*"), participle phrase ("sitting on the edge of a table *float*") or interrupter
        between commas ("One person, moving at lightning speed, *tie*"); the verb itself when it
        comes at k; else None."""
        if k >= self.n:
            return None
        gap = self.text[self.a.tokens[k - 1].end:self.a.tokens[k].start]
        if any(ch in gap for ch in ".!?;:()"):
            return None
        x = self.toks[k]
        if "," in gap:  # an interrupter between commas
            form = (verb_lemma(x) or ("", ""))[1]
            if not (form in ("ing", "pp", "past") or x in _PREPOSITIONS or x in _INTERRUPTER_OPENERS
                    or (_adverb(x) and not mostly_adjective(x))):
                return None  # an appositive or a list: "the sun, a ball of fire, rises"; "seeds, early signs, sprouts"
            close = next((m for m in range(k + 1, min(self.n, k + 30)) if "," in self.text[self.a.tokens[m - 1].end:self.a.tokens[m].start]), None)
            if close is None or any(ch in self.text[self.a.tokens[k].start:self.a.tokens[close].start] for ch in ".!?;:") \
                    or any(self.toks[m] in ("and", "or", "but") for m in range(k, close)):
                return None
            m = close
            while m < self.n - 1 and (_adverb(self.toks[m]) or self.toks[m] in _FREQUENCY_ADVERBS) and self.joined(m, m + 1):
                m += 1
            return m if self.finite_number(m, expected=True) is not None else None
        if self.finite_number(k) is not None:
            return k
        if x in ("that", "which", "who", "whose") or (x in _PREPOSITIONS and k + 1 < self.n and self.toks[k + 1] in ("which", "whom")):
            if x == "that" and k + 1 < self.n and self.toks[k + 1] in _CLASS_WORDS["D"]:
                return None  # "the fact that the ...": maybe no relative clause
            first = k + 1 if x in ("that", "which", "who") else k + 2
            if x == "whose":
                first = self.noun_phrase_end(k + 1)
            v1 = first if first < self.n and self.finite_number_after_pronoun(first) else self.next_finite(first, pronoun_ok=True)
            return None if v1 is None else self.next_finite(v1 + 1, after_verb=True)
        v = verb_lemma(x)
        after = self.toks[k + 1] if k + 1 < self.n and self.joined(k, k + 1) else ""
        if v is not None and (v[1] == "ing" or (v[1] in ("pp", "past") and (
                (after in _PREPOSITIONS and after != "to") or after in _CLASS_WORDS["R"] or _adverb(after)))):
            # a participle phrase ("the boxes *stacked* inside the car slides"; not "the girl *decided* to ...")
            return self.next_finite(k + 1)
        return None

    def finite_number_after_pronoun(self, k: int) -> bool:
        """Word k, right after a relative pronoun, is its clause's verb ("that *seeps*")."""
        return bool(_number(self.toks[k])) or self.toks[k] in ("was", "were")

    def flag(self, subject: int, verb: int | None, have: str, joint: bool = False) -> None:
        if verb is None or verb in self.read or self.toks[verb] in self.known_verbs:
            return
        need = self.finite_number(verb, after_verb=True, expected=True)
        if need is None or need == have or (joint and need == "p"):
            return
        self.read.add(verb)
        self.out.append(f"{self.a.tokens[subject].text} ... {self.a.tokens[verb].text}")

    def long_subjects(self) -> None:
        """Subjects with a long phrase before their verb: "The leaves of the tree *falls*", "the
        tea that seeps out of the bag *disperse*", "A glass cup sitting on the edge *float*", "the
        fox, drifting up off the ground, *float*", "each of the lampposts *spin*"."""
        for d in range(self.n):
            gap = self.text[self.a.tokens[d - 1].end:self.a.tokens[d].start] if d else ""
            if not (self.clause_start(d) or "," in gap or (d > 0 and self.toks[d - 1] == "whose")) or self.toks[d] == "that":
                continue
            # "a wall and a cliff ... stand": maybe one of two subjects (not after a verb: "a glow returns and the sun ...")
            joint = d > 1 and self.toks[d - 1] in ("and", "or", "nor") and self.toks[d] not in ("each", "every") \
                and self.noun_number(d - 2, np_head=True) is not None and not self.reads_as_verb(d - 2)
            if self.toks[d] in _PARTITIVES and d + 1 < self.n and self.toks[d + 1] == "of" and self.joined(d, d + 1):
                end = self.noun_phrase_end(d + 2)  # "each of the plates", "some of the animals"
                have = "s" if self.toks[d] in ("each", "one", "either", "neither") else self.noun_number(end - 1, np_head=True)
                if have is not None and end > d + 2:
                    self.flag(d, self.verb_after(end), have, joint)
                continue
            got = self.head_of_subject(d)
            if got is None or got[0] + 1 >= self.n:
                continue
            h, have = got
            if self.toks[h + 1] == "of" and have == "p" and self.joined(h, h + 1):  # "the sides of the bottle *splits*"
                end = self.noun_phrase_end(h + 2)
                if end > h + 2:
                    self.flag(h, self.verb_after(end), have, joint)
                continue
            if self.toks[h + 1] in _POSTMOD_PREPS | _POSTMOD_VERBS and self.joined(h, h + 1):
                # "The blanket of snow, thawing at a startling rate, *vanish*": against both nouns (the
                # verb right after the phrase, "a chisel made of lead *break*", is read below)
                k = h + 1 + (self.toks[h + 1] in _POSTMOD_VERBS)
                k += k < self.n and self.toks[k] == "out"
                if k < self.n and self.toks[k] in _POSTMOD_PREPS:
                    end = self.noun_phrase_end(k + 1)
                    m = self.verb_after(end) if end > k + 1 else None
                    if m is not None and m != end and self.finite_number(m, after_verb=True) != self.noun_number(end - 1, np_head=True):
                        self.flag(h, m, have, joint)
                continue
            m = self.verb_after(h + 1)
            if m is not None and m != h + 1:
                self.flag(h, m, have, joint)

    def verb_scan(self) -> None:
        """Each verb against the subject right before it: a relative clause's noun, a subject
        with a phrase after it, "was" / "were", a determiner's noun read as a compound."""
        for j, w in enumerate(self.toks):
            if j in self.read:
                continue
            if w in ("was", "were"):
                need = "s" if w == "was" else "p"
            else:
                need = _number(w)
                if need is None:
                    continue
            i = j - 1
            while i >= 0 and (_adverb(self.toks[i]) or self.toks[i] in _FREQUENCY_ADVERBS):
                i -= 1
            if i < 0:
                continue
            lexical_bare = need == "p" and w not in _PLURAL_FINITE and w != "were"
            if lexical_bare and (w in _SAME_PAST or w in (inflect(verb_lemma(w)[0], "pp"), inflect(verb_lemma(w)[0], "past"))):  # type: ignore[index]
                continue  # "a tangerine *cut* in half", "a streetlamp *cast* from glass": a participle or past tense
            if w in ("was", "were"):
                if not self.joined(i, j):
                    continue
                subj = self.toks[i]
                if w == "were" and any(x in _SUBJUNCTIVE_BEFORE for x in self.toks[max(0, i - 3):i]):
                    continue
                if subj in _SG_PRONOUNS or subj in _PL_PRONOUNS:
                    if i >= 1 and (self.toks[i - 1] in _CLASS_WORDS["P"] or verb_lemma(self.toks[i - 1]) is not None):
                        continue  # "watch it", "of them"
                    have = "s" if subj in _SG_PRONOUNS else "p"
                    if subj == "you" or have == need:
                        continue
                    self.out.append(f"{self.a.tokens[i].text} ... {self.a.tokens[j].text}")
                    continue
                if i >= 1 and self.toks[i - 1] in _CLASS_WORDS["D"] | _SG_DETERMINERS and (i < 2 or self.toks[i - 2] not in _PHRASE_HEADS) \
                        and (i < 2 or verb_lemma(self.toks[i - 2]) is None):
                    have = self.noun_number(i)
                    if self.toks[i - 1] in _SG_DETERMINERS and have == "p":
                        continue
                    if have is not None and have != need:
                        self.out.append(f"{self.a.tokens[i].text} ... {self.a.tokens[j].text}")
                continue
            if self.toks[i] in ("that", "which", "who") and i >= 1:
                if self.toks[i] == "that" and (not self.joined(i - 1, i) or (lexical_bare and not self.complement_after(j))):
                    continue
                if not self.joined(i, j):
                    continue
                # "a rubber *duck*, which": a word WordNet knows as a noun, read as one ("shows that", "patches appear, which": verbs)
                ante = self.noun_number(i - 1, np_head=self.toks[i] != "that" and usage_counts()["n"].get(self.toks[i - 1], 0) > 0)
                if ante is None or ante == need or (self.toks[i - 1] in _PL_PRONOUNS | _SG_PRONOUNS | _COLLECTIVE):
                    continue
                if _in_phrase(self.text, self.a.tokens, self.toks, i - 1):
                    k = i - 2  # back to the preposition, then the noun before it
                    while k >= 0 and self.toks[k] not in _PHRASE_HEADS:
                        k -= 1
                    kk = k - 1
                    if kk >= 1 and self.toks[kk] == "out":
                        kk -= 1
                    if kk >= 1 and self.toks[kk] in _POSTMOD_VERBS:
                        kk -= 1
                    before = self.noun_number(kk, np_head=True) if (verb_lemma(self.toks[kk]) or ("", "s"))[1] in ("s", "base") else None
                    goal = self.toks[i] == "that" and k >= 0 and self.toks[k] in ("into", "onto")  # a verb's goal, no noun's phrase
                    if k >= 1 and (self.toks[k] in ("and", "or") or (before == need and not goal)):
                        continue  # "an orange over 54 days that does", "clothes made of sheet metal, which crack";
                        # not "breaks a stone into small pieces that *floats*"
                self.out.append(f"{self.a.tokens[i - 1].text} {self.a.tokens[i].text} {self.a.tokens[j].text}")
                continue
            inner = self.noun_number(i)
            if not self.joined(i, j) or inner is None:
                continue
            if w not in self.known_verbs and self.simple_subject(i, j, need, inner):
                self.out.append(f"{self.a.tokens[i].text} {self.a.tokens[j].text}")
                continue
            # a clause subject with a phrase after it: DET (MOD)* HEAD [made] PREP (DET) (MOD)* NOUN VERB
            k, steps = i - 1, 0
            while k >= 0 and steps < 5 and self.toks[k] not in _POSTMOD_PREPS and self.joined(k, k + 1) \
                    and (self.toks[k] in _CLASS_WORDS["D"] or self.toks[k].isdigit() or (self.toks[k] not in STOPWORDS and verb_lemma(self.toks[k]) is None)):
                k -= 1
                steps += 1
            if k < 1 or self.toks[k] not in _POSTMOD_PREPS or not self.joined(k, k + 1):
                continue
            h = k - 1
            if self.toks[h] in _POSTMOD_VERBS:
                h -= 1
            elif self.toks[h] == "out" and h >= 1 and self.toks[h - 1] in _POSTMOD_VERBS:
                h -= 2
            if h < 1 or not self.joined(h, k):
                continue
            d, steps = h - 1, 0
            while d >= 0 and steps < 3 and self.toks[d] not in _CLASS_WORDS["D"] and self.toks[d] not in _SG_DETERMINERS \
                    and self.toks[d] not in _PL_DETERMINERS and self.toks[d] not in STOPWORDS and self.joined(d, d + 1) \
                    and (verb_lemma(self.toks[d]) or ("", "pp"))[1] in ("past", "pp"):
                d -= 1
                steps += 1
            if d < 0 or not (self.toks[d] in _CLASS_WORDS["D"] or self.toks[d] in _SG_DETERMINERS or self.toks[d] in _PL_DETERMINERS) \
                    or self.toks[d] in ("that", "its", "their", "his", "her") or not self.joined(d, h):
                continue
            if d > 0 and self.joined(d - 1, d) and self.toks[d - 1] not in _SUBJECT_OPENERS:
                continue  # an object or a phrase's noun, not a clause's subject
            if need == "p" and d > 0 and self.toks[d - 1] in ("and", "or", "nor"):
                continue  # "a kettlebell and a piece of paper are": a coordinated subject
            if (verb_lemma(self.toks[h]) or ("", "s"))[1] not in ("s", "base"):
                continue  # "the pieces *lying* with ...": a participle, not the head noun
            head = self.noun_number(h, np_head=True)
            if self.toks[d] in _SG_DETERMINERS and self.toks[d] not in ("one",):
                head = "s" if head != "p" else None
            elif self.toks[d] in _PL_DETERMINERS:
                head = "p"
            if head is None or head == need or (self.toks[k] == "of" and inner != head):
                continue  # agrees, or "a group of birds fly"
            if inner == need or ((lexical_bare or _noun_use(self.a, j)) and w not in _SINGULAR_FINITE | _PLURAL_FINITE
                                 and w != "were" and (j + 1 >= self.n or not self.joined(j, j + 1)
                                                      or not self.complement_after(j))):
                continue  # a bare form needs a verb's complement ("... lead *break* a"), not a comma ("... Arizona *desert*,")
            self.out.append(f"{self.a.tokens[d].text} {self.a.tokens[h].text} ... {self.a.tokens[j].text}")
