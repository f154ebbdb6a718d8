"""The lean SigV4 verifier against botocore, the oracle every AWS SDK agrees with.

For random methods, paths, queries, headers and bodies of several services (S3's path is
signed as sent, the others' normalized and encoded again), a request signed by botocore's
``SigV4Auth`` / ``S3SigV4Auth`` must be accepted, and a one-byte change anywhere in what
the signature covers must be refused. A change botocore's own recomputation would not
notice (a space turned into a tab inside a header value, which both collapse) is not a
change of the signed request and is skipped; a changed body is always refused (directly,
or through a signed ``X-Amz-Content-SHA256`` that no longer matches it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlsplit

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from appmesh_api.frontdoor import refusals
from appmesh_api.frontdoor.signatures import SignedRequest, verify
from awssigv4.canonical import canonical_path

KEY, SECRET = "AKIAORACLE0000000001", "oracle/secret+key"
ENDPOINT = "http://127.0.0.1:4566"
SERVICES = ("appmesh", "s3", "xray", "sts")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD")
RESERVED = {
    "authorization",
    "host",
    "content-length",
    "x-amz-date",
    "user-agent",
    "expect",
    "x-amzn-trace-id",
}
TOKEN = "abcdefghijklmnopqrstuvwxyz0123456789-_"
VALUE = "".join(chr(c) for c in range(0x21, 0x7F)) + "  \t"
REPLACEMENT = "ABCxyz019-._~%/:@!$&'()*+,;=\t "

segments = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
paths = st.lists(segments, max_size=5).map(
    lambda parts: "/" + "/".join(quote(part, safe="-_.~") for part in parts)
)
queries = st.lists(st.tuples(st.text(max_size=6), st.text(max_size=6)), max_size=4).map(
    lambda pairs: "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in pairs)
)
header_names = st.text(TOKEN, min_size=1, max_size=12).filter(lambda n: n not in RESERVED)
headers = st.dictionaries(header_names, st.text(VALUE, max_size=16), max_size=5)
signed_requests = st.fixed_dictionaries(
    {
        "service": st.sampled_from(SERVICES),
        "method": st.sampled_from(METHODS),
        "path": paths,
        "query": queries,
        "headers": headers,
        "body": st.binary(max_size=64),
    }
)


def sign(case: dict) -> SignedRequest:
    """The request botocore signs, as the server receives it (with Host and Content-Length,
    the second unsigned, as the HTTP client adds it after signing)."""
    query = f"?{case['query']}" if case["query"] else ""
    aws = AWSRequest(
        method=case["method"],
        url=f"{ENDPOINT}{case['path']}{query}",
        headers=dict(case["headers"]),
        data=case["body"],
    )
    signer = S3SigV4Auth if case["service"] == "s3" else SigV4Auth
    signer(Credentials(KEY, SECRET), case["service"], "eu-west-1").add_auth(aws)
    wire = [(name.lower(), value) for name, value in aws.headers.items()]
    wire += [("host", urlsplit(ENDPOINT).netloc), ("content-length", str(len(case["body"])))]
    return SignedRequest(case["method"], case["path"], case["query"], wire, case["body"])


def http_date_as_amz(date: str) -> str:
    """botocore signs with a caller's ``Date`` header in place of ``X-Amz-Date``."""
    return parsedate_to_datetime(date).replace(tzinfo=UTC).strftime("%Y%m%dT%H%M%SZ")


def oracle_signature(request: SignedRequest) -> str:
    """What botocore computes for ``request`` as received (the verifier before this one)."""
    lower = dict(request.headers)
    scope = lower["authorization"].split("Credential=")[1].split(",")[0].split("/")
    names = lower["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    query = f"?{request.query}" if request.query else ""
    aws = AWSRequest(
        method=request.method,
        url=f"http://{lower['host']}{request.raw_path}{query}",
        headers={name: lower.get(name, "") for name in names},
        data=request.body,
    )
    aws.context["timestamp"] = lower.get("x-amz-date") or http_date_as_amz(lower["date"])
    signer_class = S3SigV4Auth if scope[3] == "s3" else SigV4Auth
    signer = signer_class(Credentials(KEY, SECRET), scope[3], scope[2])
    return str(signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws))


def accepted(request: SignedRequest) -> bool:
    try:
        verify(request, lambda key: SECRET if key == KEY else None, datetime.now(UTC))
    except refusals.Refusal:
        return False
    return True


def replaced(text: str, index: int, new: str) -> str:
    index %= len(text)
    assume(text[index] != new)
    return text[:index] + new + text[index + 1 :]


def signature_of(request: SignedRequest) -> str:
    return dict(request.headers)["authorization"].rsplit("Signature=", 1)[1]


@settings(max_examples=300, deadline=None)
@given(signed_requests)
@example(  # a caller's Date header: botocore signs with it instead of X-Amz-Date
    {
        "service": "appmesh",
        "method": "GET",
        "path": "/",
        "query": "",
        "headers": {"date": ""},
        "body": b"",
    }
)
def test_what_botocore_signs_is_accepted(case: dict) -> None:
    request = sign(case)
    assert oracle_signature(request) == signature_of(request)
    assert accepted(request)


PARTS = ("method", "path", "query", "header", "body", "signature", "date")


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    signed_requests,
    st.sampled_from(PARTS),
    st.integers(0, 1 << 16),
    st.sampled_from(REPLACEMENT),
    st.integers(0, 255),
)
def test_a_one_byte_change_is_refused(
    case: dict, part: str, index: int, char: str, byte: int
) -> None:
    request = sign(case)
    changed = change(request, part, index, char, byte)
    if part not in ("body", "signature", "date"):
        assume(oracle_signature(changed) != signature_of(request))
    assert not accepted(changed)


def change(request: SignedRequest, part: str, index: int, char: str, byte: int) -> SignedRequest:
    """``request`` with one byte of ``part`` replaced."""
    fields = dict(vars(request))
    if part == "method":
        fields["method"] = replaced(request.method, index, char.upper())
    elif part == "path":
        assume(len(request.raw_path) > 1)  # the leading "/" stays
        fields["raw_path"] = "/" + replaced(request.raw_path[1:], index, char)
    elif part == "query":
        assume(request.query)
        fields["query"] = replaced(request.query, index, char)
    elif part == "body":
        assume(request.body)
        at = index % len(request.body)
        assume(request.body[at] != byte)
        fields["body"] = request.body[:at] + bytes([byte]) + request.body[at + 1 :]
    else:
        fields["headers"] = changed_headers(request, part, index, char)
    return SignedRequest(**fields)


def changed_headers(request: SignedRequest, part: str, index: int, char: str) -> list:
    lower = dict(request.headers)
    if part == "signature":
        auth = lower["authorization"]
        at = len(auth) - 64 + index % 64
        lower["authorization"] = auth[:at] + ("0" if auth[at] != "0" else "1") + auth[at + 1 :]
    elif part == "date":
        digits = [i for i, c in enumerate(lower["x-amz-date"]) if c.isdigit()]
        at = digits[index % len(digits)]
        old = lower["x-amz-date"]
        lower["x-amz-date"] = old[:at] + str((int(old[at]) + 1) % 10) + old[at + 1 :]
    else:
        names = lower["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
        name = names[index % len(names)]
        assume(lower[name])
        lower[name] = replaced(lower[name], index // len(names), char)
    return list(lower.items())


def test_the_path_is_encoded_again_except_for_s3() -> None:
    """A label's ``%3A`` is signed as ``%253A`` by App Mesh's signer, as sent by S3's; only
    the others drop dot segments. Both as botocore signs them."""
    assert canonical_path("/a%3Ab/./c//", "appmesh") == "/a%253Ab/c/"
    assert canonical_path("/a%3Ab/./c//", "s3") == "/a%3Ab/./c//"
    for service in ("appmesh", "s3"):
        case = {"service": service, "method": "GET", "path": "/a%3Ab/./c", "query": ""}
        assert accepted(sign({**case, "headers": {}, "body": b""}))
