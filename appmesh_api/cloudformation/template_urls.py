"""Reading a ``TemplateURL`` from the embedded S3, path-style or virtual-hosted.

The CDK CLI uploads its template to the bootstrap bucket and passes a URL built from the
S3 endpoint: ``http://127.0.0.1:4566/<bucket>/<key>`` with ``AWS_ENDPOINT_URL`` set.
moto 5.2 treats only hosts containing ``localhost`` as path-style, so ``127.0.0.1`` is
read as bucket ``127`` and CreateChangeSet fails with NoSuchBucket.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote, urlsplit

from moto.s3.models import s3_backends


def bucket_and_key(template_url: str) -> tuple[str, str]:
    """``(bucket, key)`` of an S3 object URL in any of the forms clients write."""
    parts = urlsplit(template_url)
    host = (parts.hostname or "").lower()
    path = unquote(parts.path.lstrip("/"))
    if _path_style(host):
        bucket, _, key = path.partition("/")
        return bucket, key
    return host.split(".", 1)[0], path


def _path_style(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    if host == "localhost" or host.startswith(("s3.", "s3-")):
        return True
    # <bucket>.s3[.region].amazonaws.com, <bucket>.localhost, <bucket>.s3.localhost.*
    virtual = host.endswith(".localhost") or ".s3." in host or ".s3-" in host
    return not virtual  # other hosts (a proxy, a container name): path-style, UNCONFIRMED


def get_stack_from_s3_url(template_url: str, account_id: str, partition: str) -> str:
    """moto's ``get_stack_from_s3_url`` with the URL forms above."""
    bucket, key = bucket_and_key(template_url)
    found = s3_backends[account_id][partition].get_object(bucket, key)
    return found.value.decode("utf-8")  # type: ignore[union-attr]
