"""The dashboard's languages, and which one a request gets.

The words are gettext catalogs, served by Flask-Babel: `translations/<locale>/LC_MESSAGES/
messages.po`, one per language besides English, whose message ids are the English text itself
(what translators' tools show as the source, and what a page falls back to). `make install`
compiles them into the `.mo` files read here; `make messages` adds new strings to each catalog.

The language is `?lang=` when a page is opened with it (remembered in a cookie), else that
cookie, else the first language of the browser's Accept-Language the dashboard has: Chinese in
Traditional characters (zh-TW, zh-HK, zh-MO, zh-Hant) gets 繁體中文, any other Chinese 简体中文,
else English. Label names, texts and ids are the users' own and are never translated.
"""
from __future__ import annotations

from pathlib import Path

from flask import Flask, Request, has_request_context, request
from flask_babel import Babel, gettext

from store.models import JobStatus, JobType

TRANSLATIONS = Path(__file__).parent / "translations"
# The web's language tags (<html lang>, ?lang=, the cookie), each named in its own language.
LANGUAGES = {"en": "English", "zh-CN": "简体中文", "zh-TW": "繁體中文"}
# The Babel locale of each, which names its catalog's folder.
LOCALES = {"en": "en", "zh-CN": "zh_Hans_CN", "zh-TW": "zh_Hant_TW"}
DEFAULT_LANGUAGE = "en"
LANGUAGE_COOKIE = "reftag_lang"
TRADITIONAL_CHINESE = {"hant", "tw", "hk", "mo"}


def N_(message: str) -> str:
    """Marks a message for extraction; it is translated where it is shown."""
    return message


# Words for values the code holds: extraction sees these literals, a page shows gettext(word).
STATUS_WORDS = {JobStatus.QUEUED: N_("queued"), JobStatus.RUNNING: N_("running"),
                JobStatus.SUCCEEDED: N_("succeeded"), JobStatus.FAILED: N_("failed"),
                JobStatus.CANCELLED: N_("cancelled")}
JOB_TYPE_WORDS = {
    # TRANSLATORS: a job's type: training an adapter
    JobType.TRAIN: N_("train"),
    # TRANSLATORS: a job's type: tagging (labelling) texts with an adapter
    JobType.TAG: N_("tag"),
    # TRANSLATORS: a job's type: choosing which texts people should label next
    JobType.SUGGEST: N_("suggest"),
    # TRANSLATORS: a job's type: checking the examples for wrong labels
    JobType.AUDIT: N_("audit"),
}


# A job page's heading, by the job's type.
JOB_TITLES = {JobType.TRAIN: N_("Train job"), JobType.TAG: N_("Tag job"), JobType.SUGGEST: N_("Suggest job"),
              JobType.AUDIT: N_("Audit job")}


def job_title(job_type: str) -> str:
    return gettext(JOB_TITLES[JobType(job_type)])


def status_word(status: str) -> str:
    return gettext(STATUS_WORDS[JobStatus(status)])


def job_type_word(job_type: str) -> str:
    return gettext(JOB_TYPE_WORDS[JobType(job_type)])


def language_of(tag: str) -> str | None:
    """The dashboard's language for a language tag of Accept-Language, if it has one."""
    primary, *rest = tag.lower().replace("_", "-").split("-")
    if primary == "en":
        return "en"
    if primary == "zh":
        subtags = set(rest)
        return "zh-TW" if subtags & TRADITIONAL_CHINESE and "hans" not in subtags else "zh-CN"
    return None


def choose_language(request: Request) -> str:
    for asked in (request.args.get("lang"), request.cookies.get(LANGUAGE_COOKIE)):
        if asked in LANGUAGES:
            return asked
    for tag, _quality in request.accept_languages:  # best first
        language = language_of(tag)
        if language:
            return language
    return DEFAULT_LANGUAGE


def current_locale() -> str | None:
    return LOCALES[choose_language(request)] if has_request_context() else None


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=current_locale, default_translation_directories=str(TRANSLATIONS))
