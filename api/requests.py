"""Reading a request: its JSON body, its query, and the field types and limits every schema
shares. Pydantic checks shape and types (strictly: "5" is not an int). Limits that come from
settings (items per job, characters per text) are checked by each request's `check(settings)`,
which reports every problem with a JSON pointer."""
from __future__ import annotations

import json
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import Annotated, Any, ClassVar

from flask import current_app, request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from reft_core.config import TrainConfig as CoreTrainConfig
from service.settings import Settings

from .errors import ApiError, invalid, json_pointer, validation_error

MAX_META_BYTES = 16_384
MAX_JSON_DEPTH = 32
MAX_INT32 = 2**31 - 1


# --- strings that are safe to store -----------------------------------------------------------


def storable(value: str) -> str:
    """Refuse what a database cannot hold or would silently mangle: NUL characters and lone
    surrogates (JSON `\\ud800` escapes that are not valid Unicode)."""
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("invalid_unicode", "is not valid Unicode (lone surrogate)") from None
    return value


# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): characters never shown —
# zero-width spaces and joiners, the byte order mark, bidi controls, variation selectors, Hangul
# fillers, tag characters. A text of only these and whitespace has nothing to read.
INVISIBLE = ((0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
             (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
             (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
             (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF))


def blank(text: str) -> bool:
    """Nothing to read: every character is whitespace (ASCII or not: U+3000, NBSP, …) or invisible."""
    return all(char.isspace() or any(lo <= ord(char) <= hi for lo, hi in INVISIBLE) for char in text)


def not_blank(value: str) -> str:
    if blank(value):
        raise PydanticCustomError("empty_text", "must not be empty or only whitespace or invisible characters")
    return value


# The documented form of `not_blank` (JSON Schema search semantics: some character that is neither
# whitespace — Python's, which adds U+001C-U+001F and U+0085 to ECMAScript's — nor invisible; the
# invisible characters above U+FFFF are left out, as a pattern without the `u` flag cannot name them).
NOT_BLANK = {"minLength": 1, "pattern": "[^\\s\\x1c-\\x1f\\x85" + "".join(
    f"\\u{lo:04x}" + (f"-\\u{hi:04x}" if hi > lo else "") for lo, hi in INVISIBLE if hi <= 0xFFFF) + "]"}
StoredStr = Annotated[str, AfterValidator(storable)]
Name = Annotated[str, Field(min_length=1, max_length=200, json_schema_extra=NOT_BLANK), AfterValidator(storable),
                 AfterValidator(not_blank)]
Text = Annotated[str, Field(json_schema_extra=NOT_BLANK), AfterValidator(storable), AfterValidator(not_blank)]
ItemId = (Annotated[StoredStr, Field(min_length=1, max_length=200)]
          | Annotated[int, Field(ge=0, le=2**63 - 1)])


def json_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((json_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((json_depth(v) for v in value), default=0)
    return 0


# A JSON string, to its closing quote or else to the end of its line (a raw line break is never
# inside a valid one, so a string left open cannot hide the lines after it).
JSON_STRING = re.compile(r'"(?:[^"\\\n]++|\\.)*+"?')
# Brackets as signed bytes (+1, +1, -1, -1), every other byte dropped (UTF-8 holds no ASCII byte
# that is not its ASCII character).
BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep(text: str) -> bool:
    """Whether a JSON text (or a line of JSON Lines, or a JSON cell) nests arrays and objects
    deeper than MAX_JSON_DEPTH, read off the raw text in linear time before any parser builds
    anything: brackets outside strings, each opening one a level deeper. Up to its first error a
    parser agrees with this count, and it stops there: after this check none goes deeper."""
    steps = JSON_STRING.sub("", text).encode("utf-8", "surrogatepass").translate(BRACKET_STEPS, NOT_A_BRACKET)
    return max(accumulate(array("b", steps)), default=0) > MAX_JSON_DEPTH


NESTED_TOO_DEEP = f"nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"


def json_strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, object keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield key
            yield from json_strings(child)
    elif isinstance(value, list):
        for child in value:
            yield from json_strings(child)


def storable_meta(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if json_depth(value) > 8:
        raise PydanticCustomError("meta_too_deep", "meta is nested deeper than 8 levels")
    for text in json_strings(value):
        storable(text)
    if len(json.dumps(value, ensure_ascii=False).encode("utf-8")) > MAX_META_BYTES:
        raise PydanticCustomError("meta_too_large", f"meta is larger than {MAX_META_BYTES} bytes as JSON")
    return value


@dataclass(frozen=True)
class CountLimit:
    """A list field whose length a setting bounds. Checked on the JSON as sent, before pydantic
    validates the list element by element: a million wrong elements (2 MB of JSON) cost it
    seconds and gigabytes of errors."""

    field: str
    setting: str  # the Settings attribute
    variable: str  # its environment variable, which the error names

    def check(self, data: Any, settings: Settings) -> None:
        value = data.get(self.field) if isinstance(data, dict) else None
        limit = getattr(settings, self.setting)
        if isinstance(value, list) and len(value) > limit:
            raise too_many(self.field, len(value), limit, f"/{self.field}", self.variable)


class RequestModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    count_limit: ClassVar[CountLimit | None] = None

    def check(self, settings: Settings) -> None:
        """Limits from settings; raise ApiError listing every problem."""


def text_problems(texts: list[tuple[str, str]], settings: Settings) -> list[dict[str, Any]]:
    """Texts over the limit, counted in characters (code points: a Chinese character is one, as a
    Latin letter is). The limit guards storage and is the same for every label set; what a model
    reads is shorter still — the first `max_length` tokens of the set's own tokenizer, the rest cut,
    not refused — so the message says that sending the start of a text is enough."""
    reads = CoreTrainConfig.options()["max_length"][1]
    return [
        {"pointer": pointer, "type": "text_too_long",
         "message": f"text has {len(text)} characters; the limit is {settings.max_text_chars} (a model reads only "
                    f"a text's first max_length tokens, {reads} by default: its start is enough)"}
        for pointer, text in texts if len(text) > settings.max_text_chars
    ]


def too_many(what: str, count: int, limit: int, pointer: str, setting: str) -> ApiError:
    return ApiError(413, f"too_many_{what}", f"{count} {what} in one request; the limit is {limit} ({setting})",
                    [{"pointer": pointer, "message": f"at most {limit} {what}", "limit": limit}])


# --- parsing a request ------------------------------------------------------------------------


def settings() -> Settings:
    return current_app.config["REFTAG_SETTINGS"]


def parse_json(raw: bytes | str, allow_empty: bool = False) -> Any:
    """A body as JSON; 400 when it is not JSON (NaN and Infinity are not JSON either) or nests
    deeper than MAX_JSON_DEPTH (checked on the raw text, before it is parsed)."""
    if not raw.strip():
        if allow_empty:
            return {}
        raise ApiError(400, "malformed_json", "request body is empty; expected a JSON object")
    try:
        # as json.loads decodes bytes (UTF-8, or UTF-16/32 by their first bytes)
        text = raw.decode(json.detect_encoding(raw), "surrogatepass") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as e:
        raise ApiError(400, "malformed_json", f"request body is not valid JSON: {e}") from None
    if too_deep(text):
        raise ApiError(400, "malformed_json", f"request body {NESTED_TOO_DEEP}", [{"limit": MAX_JSON_DEPTH}])
    try:
        return json.loads(text, parse_constant=reject_constant)
    except MemoryError:
        # Tens of megabytes of tiny values can take gigabytes as Python objects: this request
        # fails, clearly and alone, and its memory is freed (found by tests/api/test_reader_fuzz.py).
        raise ApiError(413, "too_large", "request body is too large to parse in the memory this server has; "
                       "send it in several smaller requests") from None
    except (ValueError, RecursionError) as e:
        raise ApiError(400, "malformed_json", f"request body is not valid JSON: {e}") from None


def json_body(allow_empty: bool = False) -> Any:
    """The request body as JSON, whatever the Content-Type says; 400 when it is not JSON."""
    return parse_json(request.get_data(cache=True), allow_empty)


def body_text() -> str:
    """The request body as text (UTF-8, a byte order mark dropped); 400 when it is not UTF-8."""
    try:
        return request.get_data(cache=True).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ApiError(400, "malformed_body", f"body is not valid UTF-8: {e}") from None


def reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def validate(model: type[RequestModel], data: Any) -> Any:
    if json_depth(data) > MAX_JSON_DEPTH:
        raise ApiError(400, "malformed_json", f"JSON {NESTED_TOO_DEEP}")
    if model.count_limit is not None:
        model.count_limit.check(data, settings())
    try:
        parsed = model.model_validate(data)
    except ValidationError as e:
        raise validation_error(e, data) from None
    parsed.check(settings())
    return parsed


def parse_body(model: type[RequestModel], allow_empty: bool = False) -> Any:
    return validate(model, json_body(allow_empty))


def parse_query(model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as e:
        details = [{"pointer": json_pointer(tuple(err["loc"])), "in": "query", "message": err["msg"],
                    "type": err["type"]}
                   for err in e.errors(include_url=False, include_input=False)]
        raise invalid(details) from None
