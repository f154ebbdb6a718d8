"""X-Ray for appmesh-local: the X-Ray API on the control-plane endpoint and an X-Ray daemon.

moto's X-Ray keeps segments but builds no service graph, cannot filter, reports whole-second
durations and does not merge streamed subsegments, and it has no sampling API. A mesh's
tracing is only useful with those, so appmesh-local answers X-Ray itself:

- ``store``, ``documents``: segment documents in memory, per account and region, assembled
  into traces as X-Ray does (streamed subsegments merged into their parents);
- ``analysis``: what one trace says (root, services, calls, outcomes);
- ``summaries``, ``graph``: GetTraceSummaries and the service/trace graph;
- ``filters``, ``matching``: the filter-expression language, and testing traces with it;
- ``sampling``, ``groups``: sampling rules and targets, groups;
- ``operations``, ``api``: the rest-json operations and the ASGI layer in front of moto;
- ``daemon``, ``destinations``: the UDP/TCP X-Ray daemon the SDKs and Envoy send to, and
  where it sends (this server's store, or any X-Ray endpoint).
"""
