"""The states records go through, defined once: a host's status, a cluster's,
a rolling operation's and each host's entry in it. StrEnums, so a value is its
JSON string. No imports beyond the standard library: commctl reads these too."""
from __future__ import annotations

from enum import StrEnum


class HostState(StrEnum):
    INVESTIGATING = "investigating"
    BOOTSTRAPPING = "bootstrapping"
    ACTIVE = "active"
    DISASSOCIATED = "disassociated"
    FAILED = "failed"


class ClusterState(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    FAILED = "failed"


class OperationState(StrEnum):
    IN_PROCESS = "in_process"
    FINISHED = "finished"
    FAILED = "failed"
    ABORTED = "aborted"


class HostOperationState(StrEnum):
    """One host's entry in a rolling operation: pending → in_process → done | failed | skipped."""

    PENDING = "pending"
    IN_PROCESS = "in_process"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


# The values, in order, for schemas and checks.
HOST_STATUSES = tuple(s.value for s in HostState)
CLUSTER_STATUSES = tuple(s.value for s in ClusterState)
OPERATION_STATUSES = tuple(s.value for s in OperationState)
HOST_OPERATION_STATES = tuple(s.value for s in HostOperationState)
