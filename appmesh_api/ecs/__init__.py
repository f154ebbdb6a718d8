"""ECS task definitions with an App Mesh ``proxyConfiguration``, run on this machine.

``taskdef`` reads a task definition (a file, or a family[:revision] registered through
the ECS API on appmesh-local's endpoint); ``runner`` starts its containers as
processes in ECS's order — the proxy container as ``appmesh-proxy`` with its
environment, the others with commands given on the command line — honours
``dependsOn`` conditions and container health checks, and stops them in reverse.
"""
