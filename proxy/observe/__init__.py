"""Observing streams: stats, access-log sinks, X-Ray, the metrics extension and its sinks.

Observers read a finished stream's ``StreamInfo`` and the compiled config; they never
import the router, the codecs or the upstream."""
