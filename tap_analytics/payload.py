"""Decode a response body once, and find the records in it, with errors that say where."""

from __future__ import annotations

import typing as t
from urllib.parse import urlparse

import msgspec
from singer_sdk.contrib.msgspec import decoder
from singer_sdk.exceptions import FatalAPIError

if t.TYPE_CHECKING:
    import requests

_CACHE_KEY = "_analytics_body"
_SNIPPET = 120


class PayloadError(FatalAPIError):
    """The API answered 2xx with a body that is not what the contract describes."""


def is_blank(value: t.Any) -> bool:
    """No value: null or an empty string (what APIs send for a field never set)."""
    return value is None or value == ""


def _where(response: requests.Response) -> str:
    return f"GET {urlparse(response.url).path}"


def snippet(response: requests.Response) -> str:
    text = response.content[:_SNIPPET].decode("utf-8", "replace")
    return repr(text) + (" ..." if len(response.content) > _SNIPPET else "")


def charset_of(response: requests.Response) -> str:
    """The charset the Content-Type declares; JSON's own UTF-8 when it declares none."""
    _, params = cgi_parse_header(response.headers.get("Content-Type", ""))
    return (params.get("charset") or "utf-8").strip().lower()


def body_of(response: requests.Response) -> t.Any:
    """The decoded JSON body, decoded once per response (floats as Decimal), read in the
    charset the response declares."""
    cache = response.__dict__
    if _CACHE_KEY not in cache:
        content = response.content
        charset = charset_of(response)
        try:
            if charset.replace("-", "").replace("_", "") not in ("utf8", "usascii", "ascii"):
                content = content.decode(charset).encode()
            cache[_CACHE_KEY] = decoder.decode(content)
        except (UnicodeDecodeError, LookupError) as exc:
            reason = ("declares an unknown charset" if isinstance(exc, LookupError)
                      else "is not valid")
            msg = (f"{_where(response)}: response body {reason} {charset}; body starts "
                   f"{snippet(response)}")
            raise PayloadError(msg) from None
        except msgspec.DecodeError as exc:
            if not content:
                reason = "is empty"
            elif "UTF-8" in str(exc) or not _is_utf8(content):
                reason = f"is not valid {charset}"
            else:
                reason = f"is not valid JSON ({exc})"
            msg = f"{_where(response)}: response body {reason}; body starts {snippet(response)}"
            raise PayloadError(msg) from None
    return cache[_CACHE_KEY]


def _is_utf8(content: bytes) -> bool:
    try:
        content.decode()
    except UnicodeDecodeError:
        return False
    return True


def cgi_parse_header(value: str) -> tuple[str, dict[str, str]]:
    """`text/x; charset=utf-8` as ("text/x", {"charset": "utf-8"})."""
    kind, *parts = value.split(";")
    params = {}
    for part in parts:
        name, _, val = part.partition("=")
        params[name.strip().lower()] = val.strip().strip('"')
    return kind.strip().lower(), params


def lookup(body: t.Any, path: t.Sequence[str]) -> t.Any:
    """Follow a dotted path through nested objects; None where any step is missing."""
    node = body
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def records_of(response: requests.Response, selector: tuple[str, ...] | None) -> list[dict]:
    """The list of record objects at `selector` (None: the body is the list)."""
    body = body_of(response)
    if selector is None:
        records = body
        where = "the body"
    else:
        if not isinstance(body, dict):
            msg = (
                f"{_where(response)}: expected a JSON object with "
                f"'{'.'.join(selector)}', got {type(body).__name__}; "
                f"body starts {snippet(response)}"
            )
            raise PayloadError(msg)
        records = lookup(body, selector)
        where = f"'{'.'.join(selector)}'"
        if records is None and _missing(body, selector):
            msg = f"{_where(response)}: {where} is missing; body starts {snippet(response)}"
            raise PayloadError(msg)
    if not isinstance(records, list):
        msg = (
            f"{_where(response)}: expected a list of records at {where}, "
            f"got {type(records).__name__}; body starts {snippet(response)}"
        )
        raise PayloadError(msg)
    for record in records:
        if not isinstance(record, dict):
            msg = (
                f"{_where(response)}: expected record objects at {where}, "
                f"found {type(record).__name__}; body starts {snippet(response)}"
            )
            raise PayloadError(msg)
    return records


def _missing(body: dict, selector: tuple[str, ...]) -> bool:
    node: t.Any = body
    for key in selector:
        if not isinstance(node, dict) or key not in node:
            return True
        node = node[key]
    return False
