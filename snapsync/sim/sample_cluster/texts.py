# Bodies of ConfigMaps and Secrets: config files people really store (nginx, application YAML,
# properties, Grafana dashboards, Prometheus rules), PEM blocks and Helm release blobs.
# Text is compressible like real config; certificates, keys and Helm's gzip payloads are random
# bytes, i.e. incompressible like the real ones.
from __future__ import annotations

import base64
import json

from snapsync.sim.sample_cluster.rng import Rand

_WORDS = [
    "cache",
    "timeout",
    "retries",
    "pool",
    "size",
    "max",
    "min",
    "buffer",
    "workers",
    "queue",
    "batch",
    "interval",
    "backend",
    "upstream",
    "region",
    "replica",
    "shard",
    "ttl",
    "enabled",
    "level",
    "format",
    "endpoint",
    "path",
    "host",
    "port",
    "user",
    "feature",
    "limit",
]
_METRICS = [
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "process_cpu_seconds_total",
    "container_memory_working_set_bytes",
    "kube_pod_container_status_restarts_total",
    "node_cpu_seconds_total",
    "node_filesystem_avail_bytes",
    "up",
    "grpc_server_handled_total",
]


def pem(rand: Rand, label: str, nbytes: int) -> str:
    body = base64.b64encode(rand.randbytes(nbytes)).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def b64(text: str | bytes) -> str:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def nginx_conf(rand: Rand, upstream: str, port: int) -> str:
    locations = "".join(
        f"    location /{rand.pick(_WORDS)}/{i} {{\n"
        f"      proxy_pass http://{upstream}:{port};\n"
        f"      proxy_read_timeout {rand.choice((30, 60, 120))}s;\n"
        "      proxy_set_header Host $host;\n"
        "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }\n"
        for i in range(rand.randint(2, 8))
    )
    return (
        "worker_processes auto;\nevents { worker_connections 1024; }\nhttp {\n"
        "  include /etc/nginx/mime.types;\n  sendfile on;\n  keepalive_timeout 65;\n"
        f"  gzip on;\n  server {{\n    listen 8080;\n{locations}  }}\n}}\n"
    )


def app_yaml(rand: Rand, name: str, sections: int) -> str:
    lines = [f"# {name} configuration", "server:", f"  port: {rand.choice((8080, 8000, 9090))}"]
    for _ in range(sections):
        lines.append(f"{rand.pick(_WORDS)}_{rand.pick(_WORDS)}:")
        for _ in range(rand.randint(3, 9)):
            value = rand.choice(
                (str(rand.randint(1, 5000)), "true", "false", f'"{rand.pick(_WORDS)}-{name}"')
            )
            lines.append(f"  {rand.pick(_WORDS)}{rand.pick(_WORDS).capitalize()}: {value}")
    return "\n".join(lines) + "\n"


def properties(rand: Rand, name: str, count: int) -> str:
    return "".join(
        f"{name}.{rand.pick(_WORDS)}.{rand.pick(_WORDS)}={rand.randint(0, 10000)}\n"
        for _ in range(count)
    )


def dashboard(rand: Rand, title: str, panels: int) -> str:
    """A Grafana dashboard as the kube-prometheus-stack chart ships it (often 50-200 KB)."""
    items = []
    for i in range(panels):
        metric = rand.pick(_METRICS)
        items.append(
            {
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "fieldConfig": {
                    "defaults": {"unit": rand.choice(("short", "bytes", "s", "percentunit"))},
                    "overrides": [],
                },
                "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
                "id": i + 1,
                "targets": [
                    {
                        "expr": (
                            f'sum(rate({metric}{{cluster="$cluster", namespace="$namespace", '
                            f'pod=~"$pod"}}[$__rate_interval])) by ({rand.pick(_WORDS)})'
                        ),
                        "legendFormat": "{{" + rand.pick(_WORDS) + "}}",
                        "refId": "A",
                    }
                ],
                "title": f"{rand.pick(_WORDS).capitalize()} {rand.pick(_WORDS)} ({metric})",
                "type": rand.choice(("timeseries", "stat", "table", "gauge")),
            }
        )
    doc = {
        "editable": True,
        "panels": items,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["kubernetes-mixin"],
        "templating": {
            "list": [{"name": v, "type": "query"} for v in ("cluster", "namespace", "pod")]
        },
        "time": {"from": "now-1h", "to": "now"},
        "title": title,
        "uid": rand.hexstr(16),
    }
    return json.dumps(doc, indent=2)


def prometheus_rules(rand: Rand, groups: int) -> str:
    out = ["groups:"]
    for g in range(groups):
        out.append(f"- name: {rand.pick(_WORDS)}.rules.{g}\n  rules:")
        for _ in range(rand.randint(3, 10)):
            metric = rand.pick(_METRICS)
            out.append(
                f"  - alert: {rand.pick(_WORDS).capitalize()}{rand.pick(_WORDS).capitalize()}High\n"
                f"    expr: sum(rate({metric}[5m])) by (namespace) > {rand.randint(1, 100)}\n"
                f"    for: {rand.choice((5, 10, 15))}m\n    labels:\n      severity: warning\n"
                f"    annotations:\n      summary: {metric} is above its threshold\n"
                f"      runbook_url: https://runbooks.prometheus-operator.dev/runbooks/{metric}"
            )
    return "\n".join(out) + "\n"


def helm_release(rand: Rand, nbytes: int) -> str:
    """A Helm 3 release Secret value: base64 (by the Secret) of base64 of a gzipped JSON."""
    gzip = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + rand.randbytes(nbytes)
    return b64(base64.b64encode(gzip))
