"""xDS protocol layer: snapshots, the per-node snapshot cache, proxy status, and the ADS server.

Protocol only; it knows nothing of contracts. The control plane builds a ``Snapshot`` per node
(``meshctl.translate``), calls ``SnapshotCache.set_snapshot``, and the ``XdsServer`` does the rest.
"""

from meshctl.xds.cache import SnapshotCache
from meshctl.xds.callbacks import XdsCallbacks
from meshctl.xds.resources import CLUSTER, ENDPOINT, LISTENER, ORDER, ROUTE, resource_hash, resource_name
from meshctl.xds.server import XdsServer
from meshctl.xds.snapshot import Snapshot
from meshctl.xds.status import NackInfo, NodeInfo, ProxyStatus, ProxyStatusRegistry, TypeStatus

__all__ = [
    "CLUSTER",
    "ENDPOINT",
    "LISTENER",
    "ORDER",
    "ROUTE",
    "NackInfo",
    "NodeInfo",
    "ProxyStatus",
    "ProxyStatusRegistry",
    "Snapshot",
    "SnapshotCache",
    "TypeStatus",
    "XdsCallbacks",
    "XdsServer",
    "resource_hash",
    "resource_name",
]
