"""Template URLs in the forms the CDK CLI and the aws CLI write them."""

from __future__ import annotations

import pytest

from appmesh_api.cloudformation.template_urls import bucket_and_key


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:4567/cdk-assets/stack.json", ("cdk-assets", "stack.json")),
        ("http://localhost:4567/cdk-assets/a/b.json", ("cdk-assets", "a/b.json")),
        ("http://[::1]:4567/bucket/key", ("bucket", "key")),
        ("https://s3.amazonaws.com/bucket/key", ("bucket", "key")),
        ("https://s3.eu-west-1.amazonaws.com/bucket/key", ("bucket", "key")),
        ("https://bucket.s3.amazonaws.com/dir/key", ("bucket", "dir/key")),
        ("https://bucket.s3.eu-west-1.amazonaws.com/key", ("bucket", "key")),
        ("http://bucket.localhost:4567/key", ("bucket", "key")),
        ("http://appmesh-local:4567/bucket/key%20x", ("bucket", "key x")),
    ],
)
def test_bucket_and_key(url: str, expected: tuple[str, str]) -> None:
    assert bucket_and_key(url) == expected
