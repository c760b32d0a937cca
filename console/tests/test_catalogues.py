"""Every zh-hans catalogue of ours (locale/ and <app>/locale/) is complete: no entry left
untranslated, none marked fuzzy (gettext ignores a fuzzy entry, so the page would show the
English), and no msgid twice (msgfmt refuses the file then)."""

import re
from pathlib import Path

from django.conf import settings

BASE = Path(settings.BASE_DIR)


def _catalogues() -> list[Path]:
    found = [BASE / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"]
    found += sorted(p for p in BASE.glob("*/locale/zh_Hans/LC_MESSAGES/django.po") if ".venv" not in p.parts)
    return [p for p in found if p.exists()]


def _unquote(lines: list[str]) -> str:
    return "".join(re.match(r'^(?:msg\w+(?:\[\d+\])? )?"(.*)"$', line).group(1) for line in lines)


def _entries(path: Path):
    """(msgctxt, msgid, [msgstr...], flags) for each entry, the header included."""
    for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
        lines = [line.strip() for line in block.strip().splitlines()]
        lines = [line for line in lines if line and not line.startswith("#~")]
        flags = {f.strip() for line in lines if line.startswith("#,") for f in line[2:].split(",")}
        fields: dict[str, list[str]] = {}
        current = None
        for line in lines:
            if line.startswith("#"):
                continue
            keyword = re.match(r"^(msg\w+(?:\[\d+\])?) ", line)
            if keyword:
                current = keyword.group(1)
                fields[current] = [line]
            elif current:
                fields[current].append(line)
        if "msgid" not in fields:
            continue
        strings = [_unquote(v) for k, v in fields.items() if k.startswith("msgstr")]
        yield _unquote(fields.get("msgctxt", ['""'])), _unquote(fields["msgid"]), strings, flags


def test_there_are_catalogues_to_check():
    paths = _catalogues()
    assert len(paths) >= 2
    assert sum(1 for p in paths for _ in _entries(p)) > 1000


def test_no_entry_is_untranslated_fuzzy_or_twice():
    problems = []
    for path in _catalogues():
        seen = set()
        for context, msgid, strings, flags in _entries(path):
            where = f"{path.relative_to(BASE)}: {context + chr(4) if context else ''}{msgid[:60]!r}"
            if msgid == "":
                continue  # the header
            if "fuzzy" in flags:
                problems.append(f"{where} is fuzzy")
            if not strings or any(s == "" for s in strings):
                problems.append(f"{where} is untranslated")
            if (context, msgid) in seen:
                problems.append(f"{where} appears twice")
            seen.add((context, msgid))
    assert problems == []


def test_the_parser_sees_a_fuzzy_and_an_empty_entry(tmp_path):
    sample = tmp_path / "django.po"
    sample.write_text(
        'msgid ""\nmsgstr ""\n"Language: zh_Hans\\n"\n\n'
        '#, fuzzy\nmsgid "Members"\nmsgstr "会员"\n\n'
        'msgctxt "journey"\nmsgid "active"\nmsgstr ""\n\n'
        'msgid "one"\nmsgid_plural "many"\nmsgstr[0] "一"\n',
        encoding="utf-8",
    )
    entries = {(c, m): (s, f) for c, m, s, f in _entries(sample)}
    assert "fuzzy" in entries[("", "Members")][1]
    assert entries[("journey", "active")][0] == [""]
    assert entries[("", "one")][0] == ["一"]
