"""Which region names are real: the union of every partition in botocore's endpoints data.

A credential scope's region ends up in ARNs, store keys and log lines; AWS has no
endpoint for a made-up region, so a request scoped to one is refused at the door.
"""

from __future__ import annotations

import functools

from botocore.loaders import create_loader


@functools.cache
def known_regions() -> frozenset[str]:
    """Every region botocore knows in any partition (aws, aws-cn, aws-us-gov, ...)."""
    endpoints = create_loader().load_data("endpoints")
    return frozenset(
        region for partition in endpoints["partitions"] for region in partition["regions"]
    )


def is_known_region(region: str) -> bool:
    return region in known_regions()
