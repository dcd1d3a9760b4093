"""Every text the portal shows has its English translation, and the compiled catalogue the
portal loads says what the .po file says (``make translations`` keeps both)."""

from __future__ import annotations

from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from tests.conftest import ROOT

MESSAGES = ROOT / "captive" / "translations" / "en" / "LC_MESSAGES"


def portal_texts() -> set[str]:
    with open(ROOT / "captive" / "babel.cfg") as f:
        method_map, options_map = parse_mapping_cfg(f)
    keywords = {**DEFAULT_KEYWORDS, "lazy_gettext": None}  # as `make translations` extracts
    found = extract_from_dir(str(ROOT), method_map, options_map, keywords=keywords)
    return {msg if isinstance(msg, str) else msg[0] for _f, _l, msg, _c, _x in found}


def _key(value: object) -> object:
    """A message id or string as one hashable, comparable value (plurals as tuples)."""
    return tuple(value) if isinstance(value, list | tuple) else value


def test_every_portal_text_has_an_english_translation():
    with open(MESSAGES / "messages.po", "rb") as f:
        catalog = read_po(f)
    english = {
        m.id if isinstance(m.id, str) else m.id[0]: m.string for m in catalog if m.id
    }  # a plural by its singular; every form must be there
    texts = portal_texts()
    assert len(texts) > 40
    missing = [t for t in texts if not english.get(t) or not all(_key(english[t]) or [""])]
    assert sorted(missing) == []


def test_the_compiled_catalogue_matches_the_po_file():
    with open(MESSAGES / "messages.po", "rb") as f:
        po = {_key(m.id): _key(m.string) for m in read_po(f) if m.id}
    with open(MESSAGES / "messages.mo", "rb") as f:
        mo = {_key(m.id): _key(m.string) for m in read_mo(f) if m.id}
    assert mo == po
