"""Line-exact Python ports of the Moses scripts that fairseq's recipes call.

* ``MosesTokenizer``  -- ``scripts/tokenizer/tokenizer.perl -l LANG [-a]`` (escaping on),
  built on :mod:`sacremoses` with the two places where sacremoses differs from the Perl
  script fixed:

  - current Moses (the checkout fairseq's recipes clone) always splits the period off
    the *last* word of a line ("... in the U.S." -> "U.S ."), even after an
    abbreviation; sacremoses keeps the older rule ("U.S.").  ``split_final_period``
    selects the behaviour (``True`` = Moses master; ``False`` = Moses up to 2017,
    e.g. the snapshot used for Multi30k's ``tok`` files).
  - whitespace-only lines are printed unchanged by Perl; ASCII 0x1C-0x1F are deleted
    (Python's ``\\s`` would turn them into spaces).

* ``lowercase``  -- ``lowercase.perl`` (Perl ``lc``: no final-sigma rule).
* ``MosesPunctNormalizer``  -- ``normalize-punctuation.perl -l LANG`` (Moses Dec 2017).
* ``remove_non_printing``  -- ``remove-non-printing-char.perl``.
* ``clean_corpus``  -- ``training/clean-corpus-n.perl -ratio R corpus l1 l2 out MIN MAX``.
"""

import functools
import re
import unicodedata

# Perl's \s under Unicode rules (Python's \s also matches 0x1C-0x1F, Perl's does not).
PERL_WHITESPACE = (
    " \t\n\r\f\v\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_PERL_SPACE = re.compile(f"[{PERL_WHITESPACE}]+")
_ASCII_JUNK = re.compile(r"[\000-\037]")


@functools.lru_cache(maxsize=None)
def _sacremoses_tokenizer() -> type:
    """sacremoses' tokenizer with Moses master's last-word rule as an option (sacremoses is
    the ``repro`` extra: imported when a tokenizer is built, so ``--help`` works without it)."""
    import sacremoses

    class SacreMoses(sacremoses.MosesTokenizer):
        def __init__(self, lang, split_final_period):
            super().__init__(lang=lang)
            self.split_final_period = split_final_period

        def handles_nonbreaking_prefixes(self, text):
            text = super().handles_nonbreaking_prefixes(text)
            if self.split_final_period:
                # tokenizer.perl: "split last words independently as they are unlikely
                # to be non-breaking prefixes" -- if ($i == scalar(@words)-1) $word = "$pre ."
                text = re.sub(r"(^|\s)(\S+)\.$", r"\1\2 .", text)
            return text

    return SacreMoses


class MosesTokenizer:
    """``tokenizer.perl -l LANG`` for one line at a time (no trailing newline)."""

    def __init__(self, lang, aggressive_dash_splits=False, split_final_period=True):
        self.aggressive = aggressive_dash_splits
        self._tok = _sacremoses_tokenizer()(lang, split_final_period)

    def __call__(self, line):
        if not line.strip(PERL_WHITESPACE):
            return line  # perl: lines matching /^\s*$/ are printed as they are
        line = _ASCII_JUNK.sub("", _PERL_SPACE.sub(" ", f" {line} "))
        return self._tok.tokenize(
            line, aggressive_dash_splits=self.aggressive, return_str=True, escape=True
        )


def lowercase(line):
    """``lowercase.perl``: Perl's ``lc`` maps capital sigma to small sigma everywhere."""
    return line.replace("\u03a3", "\u03c3").lower()


def remove_non_printing(line):
    """``remove-non-printing-char.perl``: every ``\\p{C}`` character becomes a space."""
    return "".join(" " if unicodedata.category(c)[0] == "C" else c for c in line)


class MosesPunctNormalizer:
    """``normalize-punctuation.perl -l LANG`` (Moses 3a0631a, Dec 2017; PENN off).

    The Perl script works on the line *with* its newline, which matters for the
    German/French rule ``(\\.+)"(\\s*[^<])``: a sentence-final ``."`` becomes ``".``.
    sacremoses strips the newline (and maps ``‘ ‚ ’`` to ``'``), so this is a port of
    its own.  NBSP below is U+00A0, as in the Perl source.
    """

    def __init__(self, lang):
        nb = "\u00a0"
        rules = [
            (r"\r", ""), (r"\(", " ("), (r"\)", ") "), (r" +", " "),
            (r"\) ([\.\!\:\?\;\,])", r")\1"), (r"\( ", "("), (r" \)", ")"),
            (r"(\d) \%", r"\1%"), (r" :", ":"), (r" ;", ";"),
            (r"\`", "'"), (r"''", ' " '),
            ("„", '"'), ("“", '"'), ("”", '"'), ("–", "-"), ("—", " - "), (r" +", " "),
            ("´", "'"), ("([a-zA-Z])‘([a-zA-Z])", r"\1'\2"), ("([a-zA-Z])’([a-zA-Z])", r"\1'\2"),
            ("‘", '"'), ("‚", '"'), ("’", '"'), ("''", '"'), ("´´", '"'), ("…", "..."),
            (f"{nb}«{nb}", ' "'), (f"«{nb}", '"'), ("«", '"'),
            (f"{nb}»{nb}", '" '), (f"{nb}»", '"'), ("»", '"'),
            (f"{nb}\\%", "%"), (f"nº{nb}", "nº "), (f"{nb}:", ":"), (f"{nb}ºC", " ºC"),
            (f"{nb}cm", " cm"), (f"{nb}\\?", "?"), (f"{nb}\\!", "!"), (f"{nb};", ";"),
            (f",{nb}", ", "), (r" +", " "),
        ]
        if lang == "en":
            rules.append((r'"([,\.]+)', r'\1"'))
        elif lang not in ("cs", "cz"):
            rules += [(r',"', '",'), (r'(\.+)"([ \t\n\r\f\v]*[^<])', r'"\1\2')]
        sep = "," if lang in ("de", "es", "cz", "cs", "fr") else "."
        rules.append((f"(\\d){nb}(\\d)", f"\\1{sep}\\2"))
        self.rules = [(re.compile(p), r) for p, r in rules]

    def __call__(self, line):
        text = line + "\n"
        for pattern, repl in self.rules:
            text = pattern.sub(repl, text)
        return text[:-1] if text.endswith("\n") else text


def word_count(line):
    """clean-corpus-n.perl's ``split(/ /, $line)`` (Perl drops trailing empty fields)."""
    words = line.split(" ")
    while words and words[-1] == "":
        words.pop()
    return len(words)


def clean_line(line):
    """clean-corpus-n.perl's normalisation of a line (no ``|`` factors assumed)."""
    line = _PERL_SPACE.sub(" ", line.replace("|", ""))
    line = line[1:] if line.startswith(" ") else line
    return line[:-1] if line.endswith(" ") else line


def clean_corpus(src_lines, tgt_lines, min_len=1, max_len=175, ratio=1.5, max_word_length=1000):
    """Keep the pairs that ``clean-corpus-n.perl -ratio RATIO ... MIN MAX`` keeps.

    Returns the list of ``(src, tgt)`` pairs, whitespace-normalised like the Perl script.
    """
    if len(src_lines) != len(tgt_lines):
        raise ValueError(f"parallel corpus sides differ in length: {len(src_lines)} vs {len(tgt_lines)}")
    too_long = re.compile(r"[^\s|]{%d}" % (max_word_length + 1))
    kept = []
    for f, e in zip(src_lines, tgt_lines):
        f, e = clean_line(f), clean_line(e)
        if not f or not e:
            continue
        fc, ec = word_count(f), word_count(e)
        if not (min_len <= fc <= max_len and min_len <= ec <= max_len):
            continue
        if ec / fc > ratio or fc / ec > ratio:
            continue
        if too_long.search(e) or too_long.search(f):
            continue
        kept.append((f, e))
    return kept
