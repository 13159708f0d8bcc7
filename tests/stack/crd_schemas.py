"""Structural JSON schemas for the three custom resources in deploy/ (ServiceMonitor, PrometheusRule,
RayJob). Hand-written from the operators' documented APIs — a subset (required fields and types),
not the upstream CRDs, which kubernetes-validate does not carry."""

from __future__ import annotations

from typing import Any

_META = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _resource(api: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api},
            "kind": {"const": kind},
            "metadata": _META,
            "spec": spec,
        },
    }


SERVICE_MONITOR = _resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    {
        "type": "object",
        "required": ["selector", "endpoints"],
        "additionalProperties": False,
        "properties": {
            "selector": {"type": "object", "properties": {"matchLabels": {"type": "object"}}},
            "namespaceSelector": {"type": "object"},
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"},
                        "path": {"type": "string"},
                        "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        "scheme": {"enum": ["http", "https"]},
                        "honorLabels": {"type": "boolean"},
                    },
                    "required": ["port"],
                },
            },
        },
    },
)

PROMETHEUS_RULE = _resource(
    "monitoring.coreos.com/v1",
    "PrometheusRule",
    {
        "type": "object",
        "required": ["groups"],
        "additionalProperties": False,
        "properties": {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "rules"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "interval": {"type": "string"},
                        "rules": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["expr"],
                                "additionalProperties": False,
                                "properties": {
                                    "alert": {"type": "string"},
                                    "record": {"type": "string"},
                                    "expr": {"type": "string", "minLength": 1},
                                    "for": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h|d)$"},
                                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "annotations": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                },
                                "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                            },
                        },
                    },
                },
            }
        },
    },
)

_POD_TEMPLATE = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["containers"],
            "properties": {
                "containers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "object", "required": ["name", "image"]},
                }
            },
        }
    },
}

RAY_JOB = _resource(
    "ray.io/v1",
    "RayJob",
    {
        "type": "object",
        "required": ["entrypoint", "rayClusterSpec"],
        "additionalProperties": False,
        "properties": {
            "entrypoint": {"type": "string", "minLength": 1},
            "shutdownAfterJobFinishes": {"type": "boolean"},
            "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
            "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
            "backoffLimit": {"type": "integer", "minimum": 0},
            "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
            "runtimeEnvYAML": {"type": "string"},
            "rayClusterSpec": {
                "type": "object",
                "required": ["headGroupSpec"],
                "properties": {
                    "rayVersion": {"type": "string"},
                    "headGroupSpec": {
                        "type": "object",
                        "required": ["rayStartParams", "template"],
                        "properties": {
                            "rayStartParams": {"type": "object", "additionalProperties": {"type": "string"}},
                            "template": _POD_TEMPLATE,
                        },
                    },
                    "workerGroupSpecs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["groupName", "rayStartParams", "template"],
                            "properties": {
                                "groupName": {"type": "string"},
                                "replicas": {"type": "integer", "minimum": 0},
                                "minReplicas": {"type": "integer", "minimum": 0},
                                "maxReplicas": {"type": "integer", "minimum": 1},
                                "rayStartParams": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                                "template": _POD_TEMPLATE,
                            },
                        },
                    },
                },
            },
        },
    },
)

SCHEMAS = {"ServiceMonitor": SERVICE_MONITOR, "PrometheusRule": PROMETHEUS_RULE, "RayJob": RAY_JOB}
