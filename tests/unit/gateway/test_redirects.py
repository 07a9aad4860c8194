"""gateway.redirects: only our own paths and exactly-allowed https hosts."""

from __future__ import annotations

import string
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.redirects import safe_redirect

ALLOWED = ["crm.corp.example", "wiki.corp.example:8443"]


@pytest.mark.parametrize(
    ("target", "result"),
    [
        ("/", "/"),
        ("/inbox", "/inbox"),
        ("/inbox?folder=a&b=%2F#top", "/inbox?folder=a&b=%2F#top"),
        ("/a/./b/../c", "/a/c"),
        ("/.//evil.example", "/evil.example"),  # stays on our origin, rebuilt without '//'
        ("https://crm.corp.example/deals", "https://crm.corp.example/deals"),
        ("https://CRM.corp.example", "https://crm.corp.example/"),
        ("HTTPS://crm.corp.example/x", "https://crm.corp.example/x"),
        ("https://crm.corp.example:443/x", "https://crm.corp.example/x"),
        ("https://wiki.corp.example:8443/p?q=1", "https://wiki.corp.example:8443/p?q=1"),
    ],
)
def test_followed(target: str, result: str) -> None:
    assert safe_redirect(target, ALLOWED) == result


@pytest.mark.parametrize(
    "target",
    [
        "",
        "inbox",
        "//evil.example",
        "///evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/%5Cevil.example",
        "/%09/evil.example",
        "/\t/evil.example",
        "/%0a/evil.example",
        "/./\\evil.example",
        "/%2F/evil.example",
        "/%2f%2fevil.example",
        "/ /evil.example",
        "/%20/evil.example",
        "https:evil.example",
        "https:/evil.example",
        "https:///evil.example",
        "http://crm.corp.example/",
        "javascript:alert(1)",
        "data:text/html,x",
        "https://evil.example/",
        "https://crm.corp.example.evil.example/",
        "https://evilcrm.corp.example/",
        "https://xcrm.corp.example/",
        "https://corp.example/",
        "https://crm.corp.example@evil.example/",
        "https://evil.example@crm.corp.example/",
        "https://crm.corp.example:x@evil.example/",
        "https://crm.corp.example%2eevil.example/",
        "https://crm.corp.example./",
        "https://crm.corp.example:8443/",
        "https://wiki.corp.example/",
        "https://crm.corp.example:0/",
        "https://crm.corp.example:99999/",
        "https://crm.corp.example/%2F%2Fevil",
        "https://crm.corp.example\\@evil.example/",
        "https://crm\u3002corp.example/",
        "/caf\u00e9",
        "/x\x00",
        "/x?a=\x7f",
        "/x?a=<script>",
        "/x#a#b",
        "/" + "a" * 3000,
    ],
)
def test_refused(target: str) -> None:
    assert safe_redirect(target, ALLOWED) is None


def _browser_origin(location: str) -> str:
    """The origin a browser lands on, reading '\\' as '/' and dropping tab/CR/LF (WHATWG)."""
    cleaned = location.replace("\\", "/").translate({9: None, 10: None, 13: None})
    joined = urllib.parse.urljoin("https://gw.corp.example/start", cleaned)
    return urllib.parse.urlsplit(joined).netloc.lower()


_PIECES = st.sampled_from(
    [
        "/",
        "//",
        "\\",
        "%5c",
        "%2f",
        "%09",
        "\t",
        ".",
        "..",
        "@",
        ":",
        "https:",
        "evil.example",
        "crm.corp.example",
        "?",
        "#",
        "%2e",
        " ",
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_PIECES, max_size=8).map("".join))
def test_fuzz_never_leaves_allowed_origins(target: str) -> None:
    result = safe_redirect(target, ALLOWED)
    if result is None:
        return
    assert _browser_origin(result) in {"gw.corp.example", *ALLOWED}
    # What we send is already in its safe form.
    assert safe_redirect(result, ALLOWED) == result


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable, max_size=60))
def test_fuzz_arbitrary_text(target: str) -> None:
    result = safe_redirect(target, ALLOWED)
    if result is not None:
        assert _browser_origin(result) in {"gw.corp.example", *ALLOWED}
        assert not any(c in result for c in "\\\t\r\n ")
