# appmesh-local in a container, for teams that run it beside LocalStack
# (localstack-compose.yml). The default way to run appmesh-local needs no Docker.
FROM python:3.11-slim
WORKDIR /opt/appmesh-local
COPY pyproject.toml README.md ./
COPY appmesh_api appmesh_api
COPY awssigv4 awssigv4
COPY envoy_bootstrap envoy_bootstrap
COPY proxy proxy
RUN pip install --no-cache-dir .
EXPOSE 4567 15010 2000/udp 2000
ENTRYPOINT ["appmesh-local"]
CMD ["serve", "--host", "0.0.0.0", "--port", "4567", "--data-dir", "/var/lib/appmesh-local"]
