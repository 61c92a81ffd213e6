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
class Action(StrEnum):
    """What an activity entry (commissaire.activity) says was done."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    ASSOCIATE = "associate"  # a host joins a cluster
    DISASSOCIATE = "disassociate"  # a host leaves it
    START = "start"  # a rolling operation is asked for
    ABORT = "abort"
    STEP = "step"  # a host's state within an operation changed
    FINISH = "finish"  # an operation ended
    REVOKE = "revoke"  # an API token was revoked
    REQUEST = "request"  # a change request on no route, or with a method none serves


HOST_STATUSES = tuple(s.value for s in HostState)
CLUSTER_STATUSES = tuple(s.value for s in ClusterState)
OPERATION_STATUSES = tuple(s.value for s in OperationState)
HOST_OPERATION_STATES = tuple(s.value for s in HostOperationState)
ACTIONS = tuple(a.value for a in Action)
