"""The proxy's xDS clients: how it stays in step with the control plane.

``state.py`` is what both transports share (subscriptions, warming, applying, verdicts,
failover); ``rest.py`` is REST-JSON State of the World, long-polled (the default,
``ads_config.api_type: GRPC``); ``delta.py`` is incremental ADS over gRPC
(``api_type: DELTA_GRPC``), which alone loads protobuf; ``grpc_stream.py`` is one gRPC
call over h2, for it and the local SDS agent client.
"""
