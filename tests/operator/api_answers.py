"""What kube-apiserver answers where kmock (no RBAC, no admission) cannot: the exact bodies.

Each was captured from a real kube-apiserver v1.32 (the lab: ../shared/lab) and matches the
source that writes it, cited per function. kmock serves them through a reaction:
`kube.kmock[matcher] << 403 << rbac_forbidden` (a callable gets the request).
"""

from __future__ import annotations

import re
from typing import Any

OPERATOR_USER = "system:serviceaccount:mfpo-system:mfpo"
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"/namespaces/(?P<namespace>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?"
)


def _verb(method: str, named: bool, watch: bool) -> str:
    """The RBAC verb of a request (apiserver pkg/endpoints/request/requestinfo.go)."""
    if method == "GET":
        return "get" if named else ("watch" if watch else "list")
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]


def rbac_forbidden(request: Any) -> dict[str, Any]:
    """The RBAC authorizer's denial of a namespaced request (apiserver
    pkg/endpoints/handlers/responsewriters/errors.go `forbiddenMessage`), e.g. on the lab:
    `jobs.batch is forbidden: User "system:serviceaccount:mfpo-system:mfpo" cannot watch
    resource "jobs" in API group "batch" in the namespace "nogrant"`."""
    match = _PATH.match(request.url.path)
    assert match, f"not a namespaced resource path: {request.url.path}"
    group, plural, name = match["group"] or "", match["plural"], match["name"]
    verb = _verb(request.method, bool(name), request.url.query.get("watch") == "true")
    what = f"{plural}.{group}" if group else plural
    subject = f'{what} "{name}"' if name else what
    details = {"group": group, "kind": plural} if group else {"kind": plural}
    if name:
        details = {"name": name, **details}
    return {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f'{subject} is forbidden: User "{OPERATOR_USER}" cannot {verb} resource '
        f'"{plural}" in API group "{group}" in the namespace "{match["namespace"]}"',
        "reason": "Forbidden", "details": details, "code": 403,
    }  # fmt: skip


def not_found(plural: str, name: str) -> dict[str, Any]:
    """A 404 on a named object (apimachinery pkg/api/errors `NewNotFound`), e.g. on the lab:
    `secrets "nosuch" not found`."""
    return {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f'{plural} "{name}" not found', "reason": "NotFound",
        "details": {"name": name, "kind": plural}, "code": 404,
    }  # fmt: skip


def namespace_terminating(plural: str, name: str, namespace: str) -> dict[str, Any]:
    """The NamespaceLifecycle admission plugin refusing new objects (an Event too) in a
    namespace being deleted (apiserver pkg/admission/plugin/namespace/lifecycle `Admit`:
    NewForbidden with cause NamespaceTerminating), as the lab answered a POST of an Event."""
    return {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f'{plural} "{name}" is forbidden: unable to create new content in namespace '
        f"{namespace} because it is being terminated",
        "reason": "Forbidden",
        "details": {"name": name, "kind": plural, "causes": [{
            "reason": "NamespaceTerminating", "message": f"namespace {namespace} is being terminated",
            "field": "metadata.namespace",
        }]},
        "code": 403,
    }  # fmt: skip


def storage_timeout(request: Any) -> dict[str, Any]:
    """A 500 for an etcd error that no storage layer converted (here `etcdserver: request
    timed out`, etcd's ErrTimeout text): the endpoint handlers' `ErrorToAPIStatus` makes it a
    Failure with code 500, reason Unknown (empty, so omitted) and the error's text as message
    (apiserver pkg/endpoints/handlers/responsewriters/status.go)."""
    return {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "etcdserver: request timed out", "code": 500,
    }  # fmt: skip
