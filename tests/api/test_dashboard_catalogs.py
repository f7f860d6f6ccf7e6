"""The dashboard's gettext catalogs (api/ui/translations): every string the templates and code
mark for translation — found the way `pybabel extract` finds them, from api/ui/babel.cfg — has a
translation in each catalog, with the same placeholders, written in that catalog's script; and
the .mo files the app reads were compiled from the .po files as they are now."""
from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from api.ui import i18n

UI = Path(i18n.__file__).parent
CATALOGS = {locale: i18n.TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po"
            for language, locale in i18n.LOCALES.items() if language != i18n.DEFAULT_LANGUAGE}
# Characters each script can be written in: a Simplified character has no Big5 code, a
# Traditional one (mostly) no GB 2312 code.
SCRIPT_CODECS = {"zh_Hans_CN": "gb2312", "zh_Hant_TW": "big5"}


def extracted() -> set[str]:
    """Every message id the dashboard marks (a plural's singular form stands for it)."""
    with open(UI / "babel.cfg") as config:
        method_map, options_map = parse_mapping_cfg(config)
    return {message[0] if isinstance(message, tuple) else message
            for _file, _line, message, _comments, _context in extract_from_dir(UI, method_map, options_map)}


def catalog(locale: str):
    with open(CATALOGS[locale], "rb") as po:
        return read_po(po, locale=locale)


def texts(message) -> list[str]:
    return list(message.string) if isinstance(message.string, (list, tuple)) else [message.string]


def test_extraction_finds_the_words_of_templates_code_and_plurals():
    found = extracted()
    assert {"Label sets", "Page %(page)s of %(pages)s", "That API key is unknown or revoked.", "queued", "tag",
            "%(num)s example"} <= found
    assert len(found) > 100


def test_every_language_but_english_has_a_catalog():
    assert set(CATALOGS) == {path.parent.parent.name for path in i18n.TRANSLATIONS.glob("*/LC_MESSAGES/messages.po")}
    assert all(path.exists() for path in CATALOGS.values())


@pytest.mark.parametrize("locale", sorted(CATALOGS))
def test_every_dashboard_string_has_a_translation_in_each_catalog(locale):
    messages = {message.id[0] if isinstance(message.id, tuple) else message.id: message
                for message in catalog(locale) if message.id}
    missing = sorted(key for key in extracted() if key not in messages)
    untranslated = sorted(key for key, message in messages.items() if message.fuzzy or not all(texts(message)))
    stale = sorted(set(messages) - extracted())
    assert not missing, f"{locale}: not in the catalog (make messages, then translate): {missing}"
    assert not untranslated, f"{locale}: untranslated or fuzzy: {untranslated}"
    assert not stale, f"{locale}: no longer used (make messages drops them): {stale}"


@pytest.mark.parametrize("locale", sorted(CATALOGS))
def test_translations_keep_their_placeholders(locale):
    # Babel's own checks: python-format placeholders the same as the message id's.
    problems = [(message.id, str(error)) for message, errors in catalog(locale).check() for error in errors]
    assert not problems


@pytest.mark.parametrize("locale", sorted(SCRIPT_CODECS))
def test_each_chinese_catalog_is_written_in_its_own_script(locale):
    wrong = [text for message in catalog(locale) if message.id for text in texts(message)
             if not _encodes(text, SCRIPT_CODECS[locale])]
    assert not wrong, f"{locale}: characters of the other script in {wrong}"


def _encodes(text: str, codec: str) -> bool:
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


@pytest.mark.parametrize("locale", sorted(CATALOGS))
def test_the_compiled_catalog_is_that_of_the_po_file(locale):
    mo_path = CATALOGS[locale].with_suffix(".mo")
    assert mo_path.exists(), f"{mo_path} is missing: `make install` compiles the catalogs (pybabel compile)"
    with open(mo_path, "rb") as mo:
        compiled = entries(read_mo(mo))
    assert compiled == entries(catalog(locale)), f"{mo_path} is older than its .po: `make install` compiles it again"


def entries(messages) -> dict:
    return {(tuple(message.id) if isinstance(message.id, (list, tuple)) else message.id): tuple(texts(message))
            for message in messages if message.id}
