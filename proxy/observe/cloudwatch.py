"""The metrics extension to CloudWatch: one PutMetricData round per stats flush.

App Mesh's Envoy left this to a CloudWatch agent sidecar fed by DogStatsD; the metrics
arrived as ``envoy.appmesh.<Metric>`` with the extension's dimensions, in the namespace
of the agent's config. Here the proxy sends the same metrics itself to the endpoint of
``AWS_ENDPOINT_URL`` (appmesh-local's embedded CloudWatch, or any other), signed with the
usual AWS credentials, so a local mesh needs no agent.

boto3 blocks, so every call runs on one worker thread, in order; the loop only builds the
request body and hands it over. If CloudWatch falls behind, rounds beyond a few waiting
ones are dropped (with a warning) rather than queued without bound.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.config.observability import CloudWatchConfig
    from proxy.observe.metrics_extension import MetricPoint

log = logging.getLogger("appmesh_proxy.cloudwatch")

PREFIX = "envoy.appmesh."
BATCH = 500  # metric data items per PutMetricData (AWS allows 1000)
MAX_WAITING = 4  # rounds queued behind a slow call before new ones are dropped
LOCAL_ACCOUNT = "123456789012"  # appmesh-local's default account, when no key is set


def metric_data(points: list[MetricPoint], timestamp: float) -> list[dict[str, Any]]:
    """PutMetricData items: a value per counter delta or gauge, statistics per timing."""
    data = []
    for point in points:
        item: dict[str, Any] = {
            "MetricName": PREFIX + point.name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in point.dims if v],
            "Timestamp": timestamp,
            "Unit": point.unit,
        }
        timing = point.timing
        if timing is not None:
            item["StatisticValues"] = {
                "SampleCount": timing.count,
                "Sum": timing.total,
                "Minimum": timing.minimum,
                "Maximum": timing.maximum,
            }
        else:
            item["Value"] = float(point.value)
        data.append(item)
    return data


class CloudWatchExporter:
    """PutMetricData on a worker thread; ``export`` never blocks the loop."""

    def __init__(self, config: CloudWatchConfig) -> None:
        self.config = config
        self.sent = self.failed = self.dropped = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "appmesh-cloudwatch")
        self._waiting: list[concurrent.futures.Future[None]] = []
        self._client: Any = None

    def export(self, points: list[MetricPoint]) -> None:
        data = metric_data(points, time.time())
        if not data:
            return
        self._waiting = [f for f in self._waiting if not f.done()]
        if len(self._waiting) >= MAX_WAITING:
            self.dropped += len(data)
            log.warning("CloudWatch is behind; dropped %d metric values", len(data))
            return
        self._waiting.append(self._executor.submit(self._put, data))

    def _put(self, data: list[dict[str, Any]]) -> None:
        """On the worker thread: create the client once, then send in batches."""
        try:
            client = self._client or self._new_client()
            for start in range(0, len(data), BATCH):
                chunk = data[start : start + BATCH]
                client.put_metric_data(Namespace=self.config.namespace, MetricData=chunk)
                self.sent += len(chunk)
        except Exception as exc:  # network, credentials, throttling: telemetry never raises
            self.failed += len(data)
            log.warning("PutMetricData to %s failed: %s", self.config.endpoint, exc)

    def _new_client(self) -> Any:
        import boto3
        from botocore.config import Config

        session = boto3.session.Session()
        key: str | None = None  # None: the session's own credentials
        secret: str | None = None
        if session.get_credentials() is None and "amazonaws.com" not in self.config.endpoint:
            key, secret = os.environ.get("AWS_ACCESS_KEY_ID") or LOCAL_ACCOUNT, "local"
        self._client = session.client(
            "cloudwatch",
            endpoint_url=self.config.endpoint,
            region_name=self.config.region,
            config=Config(retries={"max_attempts": 2}, connect_timeout=2, read_timeout=10),
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )
        return self._client

    async def close(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for the rounds already handed over, then stop the thread."""
        waiting = [asyncio.wrap_future(f) for f in self._waiting if not f.done()]
        if waiting:
            with contextlib.suppress(Exception):
                await asyncio.wait(waiting, timeout=timeout)
        self._executor.shutdown(wait=False, cancel_futures=True)
