# The gateway image: docker compose up builds it (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY exporter ./exporter
# [aws]: botocore, for Bedrock services that sign with the gateway's AWS credentials.
RUN pip install --no-cache-dir -c constraints.txt ".[aws]" && rm -rf /src
# The history database lives in /data (a volume); run as nobody.
WORKDIR /data
RUN chown 65534:65534 /data
USER 65534:65534
EXPOSE 8080 9464
ENTRYPOINT ["llm-usage-exporter"]
CMD ["serve", "--config", "/etc/llm-usage-exporter/config.yaml"]
