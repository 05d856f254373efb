"""Wiring: one control-plane replica — store, mesh state, negotiation, lifecycle, xDS, history.

Everything here is composition and I/O ordering; the logic lives in the modules it wires
(solver, translate, governance, xds). The REST API and the CLI's `serve` talk to this object.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from meshctl.contracts.lifecycle import Lifecycle
from meshctl.contracts.service import Negotiator
from meshctl.contracts.state import MeshState
from meshctl.errors import Conflict, NotFound, StoreUnavailable, ValidationFailed
from meshctl.governance.policy import PolicySet
from meshctl.metrics import Metrics
from meshctl.model import (
    LIVE_STATES,
    Contract,
    ContractEvent,
    ContractState,
    Link,
    Provider,
    ProviderSpec,
    TopologyFile,
    Zone,
)
from meshctl.store.base import ChangeEvent, Store
from meshctl.sync import ConfigSync
from meshctl.topology import history
from meshctl.topology.graph import CapabilityGraph
from meshctl.translate.node import NodeView
from meshctl.xds.cache import SnapshotCache
from meshctl.xds.server import XdsServer
from meshctl.xds.status import ProxyStatusRegistry

log = logging.getLogger(__name__)

# The owner recorded for providers an operator registered: no agent token can ever match it.
OPERATOR_OWNER = "operator"


class ControlPlane:
    def __init__(
        self,
        store: Store,
        *,
        policies: PolicySet | None = None,
        policies_dir: str | None = None,
        topology: TopologyFile | None = None,
        clock: Callable[[], float] = time.time,
        origin: str | None = None,
        tick_s: float = 0.2,
    ) -> None:
        self.store = store
        # The store stamps every change event with its own origin; a replica whose origin differs
        # takes its own writes for another replica's and applies them again (a second push, and
        # for a moment an older version of what it just changed).
        self.origin = origin or getattr(store, "origin", None) or uuid.uuid4().hex[:8]
        self.clock = clock
        self.tick_s = tick_s
        self.policy_set = policies or PolicySet()
        self.policies_dir = policies_dir
        self.topology = topology
        self.state = MeshState(
            graph=CapabilityGraph(intra_zone_latency_ms=topology.intra_zone_latency_ms if topology else 0.5)
        )
        self.metrics = Metrics()
        self.cache = SnapshotCache()
        self.status = ProxyStatusRegistry(clock=clock)
        self._providers_memo: tuple[int, dict[str, Provider]] = (-1, {})
        self.sync = ConfigSync(
            self.cache,
            self.status,
            contracts=lambda: list(self.state.contracts.values()),
            providers=self._providers_by_id,
            on_nack=self._on_nack,
            on_node=self._on_node,
        )
        self.negotiator = Negotiator(
            self.state,
            store,
            lambda: self.policy_set,
            self.sync,
            clock=clock,
            record=self.record,
            metrics=self.metrics,
        )
        self.lifecycle = Lifecycle(self.negotiator)
        self.xds = XdsServer(self.cache, self.status, callbacks=self.sync)
        self.xds_port: int | None = None
        self.history_version = 0
        self._dumps = history.DumpCache()
        self._tasks: list[asyncio.Task[Any]] = []
        self._history_listeners: list[asyncio.Queue[dict[str, Any]]] = []
        self.metrics.on_refresh(self._refresh_gauges)

    # -- start / stop ------------------------------------------------------------------------------
    async def start(
        self, xds_host: str = "127.0.0.1", xds_port: int = 18000, *, serve_xds: bool = True
    ) -> None:
        # Subscribe before loading: a change another replica stores during load() is then replayed
        # (appliers are idempotent) instead of lost.
        feed = self.store.follow()
        await self.load()
        if self.topology is not None:
            await self.apply_topology(self.topology)
        # A full collection over a large graph takes 50-90 ms and would land inside random
        # negotiations; what is loaded now lives as long as the process, so take it out of GC.
        gc.collect()
        gc.freeze()
        if serve_xds:
            self.xds_port = await self.xds.start(xds_host, xds_port)
        self._tasks.append(asyncio.create_task(self._keeper(), name="meshctl-keeper"))
        self._tasks.append(asyncio.create_task(self._follow(feed), name="meshctl-follow"))
        await self.record("control plane started", {"origin": self.origin})

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self.xds_port is not None:
            await self.xds.stop(1.0)
            self.xds_port = None

    async def load(self) -> None:
        """Rebuild this replica's view from the store (a restarted replica serves the same versions)."""
        g = self.state.graph
        for z in await self.store.list_zones():
            g.set_zone(z)
        # Another replica may be writing while this one reads (replicas starting together all load
        # the topology file): what these reads miss arrives on the feed, subscribed before load().
        for link in await self.store.list_links():
            if g.zone(link.a) is not None and g.zone(link.b) is not None:
                g.set_link(link)
        for p in await self.store.list_providers():
            if g.zone(p.zone) is not None:
                g.set_provider(p)
        for c in await self.store.list_contracts():
            self.state.contracts[c.id] = c
        self.state.reservations = await self.store.reservations()
        # history_version comes from the store with the first record(): reading the history to
        # find it would cost a restart O(history x mesh).

    async def apply_topology(self, tf: TopologyFile) -> None:
        for z in tf.zones:
            if self.state.graph.zone(z.name) != z:
                await self.put_zone(z, record=False)
        for link in tf.links:
            await self.put_link(link, record=False)
        await self.record("topology file loaded", {"zones": len(tf.zones), "links": len(tf.links)})

    async def _keeper(self) -> None:
        store_down = False
        # Heartbeats cannot reach a control plane that is not running: after a restart (of the
        # only replica, or of all of them) every lease gets one ttl before it can lapse.
        grace_from = self.clock()
        while True:
            try:
                if store_down:
                    await self.store.ping()
                    store_down = False
                    # Heartbeats sent during the outage were refused: every lease gets a full
                    # ttl from now, or each provider would lapse the moment the store is back.
                    grace_from = self.clock()
                    log.warning("store reachable again; leases renewable for one ttl from now")
                await self.lifecycle.lapse_leases(grace_from=grace_from)
                await self.lifecycle.expire_due()
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:
                # Expected during an outage: nothing lapses or expires until the store is back.
                if not store_down:
                    log.warning("store unavailable, leases and expiry wait for it: %s", exc.message)
                store_down = True
            except Exception:  # a bad tick must not stop expiry for good
                log.exception("keeper tick failed")
            await asyncio.sleep(self.tick_s)

    async def _follow(self, feed: AsyncIterator[ChangeEvent]) -> None:
        """Apply other replicas' changes to this replica's view and push to its own proxies."""
        while True:
            try:
                async for ev in feed:
                    if ev.origin == self.origin:
                        continue
                    try:
                        await self._apply_remote(ev)
                    except Exception:
                        # One event this view cannot take must not cost the feed its position
                        # (a new follow() starts at "now" and would skip what came meanwhile).
                        log.exception(
                            "change %s %s %s from %s not applied", ev.op, ev.kind, ev.key, ev.origin
                        )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("change feed interrupted; resuming")
                await asyncio.sleep(0.5)
                feed = self.store.follow()

    async def _apply_remote(self, ev: ChangeEvent) -> None:
        g = self.state.graph
        if ev.kind == "zone":
            if ev.op == "put":
                g.set_zone(Zone.model_validate(ev.data))
            else:
                g.remove_zone(ev.key)
        elif ev.kind == "link":
            if ev.op == "put":
                g.set_link(Link.model_validate(ev.data))
            else:
                a, _, b = ev.key.partition("|")
                g.remove_link(a, b)
        elif ev.kind == "provider":
            if ev.op == "put":
                g.set_provider(Provider.model_validate(ev.data))
            else:
                g.remove_provider(ev.key)
            # New endpoints (or a provider gone) change this replica's proxies' config even
            # when no allocation moves; the replica that re-solves publishes those separately.
            self.sync.push_services({c.request.consumer for c in self.state.using(ev.key)})
        elif ev.kind == "contract" and ev.op == "put":
            c = Contract.model_validate(ev.data)
            holds = c.state in LIVE_STATES or c.state is ContractState.PENDING_APPROVAL
            self.state.put_contract(c, c.allocation.reservation if (holds and c.allocation) else {})
            self.sync.push_services([c.request.consumer])
        elif ev.kind == "policy":
            # Uploaded documents travel with the event, so every replica enforces the same set;
            # a directory reload makes each replica reload its own copy of the directory.
            try:
                docs = ev.data.get("documents")
                if docs is not None:
                    self.policy_set = PolicySet.from_documents([(d[0], d[1]) for d in docs])
                elif self.policies_dir:
                    self.policy_set = self.policy_set.reload(self.policies_dir)
            except Exception:
                log.exception("policy change from replica %s not applied; old policies stay", ev.origin)

    # -- history ------------------------------------------------------------------------------------------
    async def record(self, cause: str, detail: dict[str, Any]) -> None:
        snap = history.snapshot(
            self.state,
            version=self.history_version + 1,
            at=self.clock(),
            cause=cause,
            detail=detail,
            cache=self._dumps,
        )
        # The store hands out versions: replicas sharing it never reuse one another's.
        version = await self.store.append_history(snap)
        self.history_version = max(self.history_version, version)
        snap = {**snap, "version": version}
        for q in list(self._history_listeners):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(snap)

    def listen_history(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=256)
        self._history_listeners.append(q)
        return q

    def unlisten_history(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        with contextlib.suppress(ValueError):
            self._history_listeners.remove(q)

    # -- xDS callbacks ----------------------------------------------------------------------------------------
    def _providers_by_id(self) -> dict[str, Provider]:
        v = self.state.graph.version
        if self._providers_memo[0] != v:
            self._providers_memo = (v, self.state.providers_by_id())
        return self._providers_memo[1]

    def _on_node(self, view: NodeView) -> None:
        if view.zone and self.state.graph.zone(view.zone) is not None:
            if self.state.graph.consumer_zone(view.service) != view.zone:
                self.state.graph.set_consumer(view.service, view.zone)

    def _on_nack(self, node_id: str, type_url: str, version: str, error: str) -> None:
        self.metrics.nack(type_url)
        task = asyncio.get_running_loop().create_task(self._record_nack(node_id, type_url, version, error))
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _record_nack(self, node_id: str, type_url: str, version: str, error: str) -> None:
        st = self.status.get(node_id)
        service = st.node.cluster if st else ""
        short = type_url.rsplit(".", 1)[-1]
        try:
            await self.negotiator.audit(
                actor=f"proxy:{node_id}",
                subject=node_id,
                kind="nack",
                decision=f"{short} {version} rejected",
                details={"error": error, "service": service},
            )
        except StoreUnavailable as exc:
            # This runs as a task nobody awaits; the NACK stays on the proxy's status regardless.
            log.warning("NACK from %s not audited, store unavailable: %s", node_id, exc.message)
        # The contracts whose config that node carries learn of the NACK too.
        now = self.clock()
        async with self.negotiator.lock:  # under the lock: never write over a newer copy
            for c in self.state.live():
                if c.request.consumer != service:
                    continue
                ev = ContractEvent(
                    at=now, kind="nack", detail=f"{node_id} rejected {short} {version}: {error}"
                )
                new = c.model_copy(update={"events": [*c.events, ev], "updated_at": now})
                with contextlib.suppress(Exception):
                    await self.negotiator.commit(new, self.state.held_by(c.id))

    def _refresh_gauges(self) -> None:
        self.metrics.connected_proxies.set(sum(1 for p in self.status.list() if p.connected))
        counts = {s: 0 for s in ContractState}
        for c in self.state.contracts.values():
            counts[c.state] += 1
        for s, n in counts.items():
            self.metrics.contracts.labels(state=str(s)).set(n)
        lat = self.sync.push_latencies_s
        for v in lat:
            self.metrics.push_latency.observe(v)
        lat.clear()

    # -- zones and links (operator) ----------------------------------------------------------------------------
    async def put_zone(self, zone: Zone, *, record: bool = True) -> Zone:
        await self.store.put_zone(zone)
        self.state.graph.set_zone(zone)
        if record:
            await self.record("zone changed", {"zone": zone.name})
        return zone

    async def delete_zone(self, name: str) -> None:
        if self.state.graph.zone(name) is None:
            raise NotFound(f"zone {name!r} not found", field="name")
        users = [p.id for p in self.state.graph.providers() if p.zone == name]
        if users:
            raise Conflict(f"zone {name!r} still has providers: {', '.join(users[:5])}", field="name")
        # Its links go with it, in the store too: they must not reappear when the zone returns.
        for link in [x for x in self.state.graph.links() if name in (x.a, x.b)]:
            await self.store.delete_link(link.a, link.b)
            self.state.graph.remove_link(link.a, link.b)
        await self.store.delete_zone(name)
        self.state.graph.remove_zone(name)
        await self.record("zone removed", {"zone": name})
        await self.lifecycle.resolve(everything=True, cause="zone removed")

    async def put_link(self, link: Link, *, record: bool = True) -> Link:
        for field, z in (("a", link.a), ("b", link.b)):
            if self.state.graph.zone(z) is None:
                raise ValidationFailed(f"unknown zone {z!r}", field=field)
        await self.store.put_link(link)
        self.state.graph.set_link(link)
        if record:
            await self.record("link changed", {"link": f"{link.a}|{link.b}", "latency_ms": link.latency_ms})
            await self.lifecycle.resolve(
                everything=True, cause=f"link {link.a}-{link.b} now {link.latency_ms:g} ms"
            )
            await self.lifecycle.resolve_degraded()
        return link

    async def delete_link(self, a: str, b: str) -> None:
        if not any(link.key == Link(a=a, b=b, latency_ms=0).key for link in self.state.graph.links()):
            raise NotFound(f"link {a}-{b} not found", field="link")
        await self.store.delete_link(a, b)
        self.state.graph.remove_link(a, b)
        await self.record("link removed", {"link": f"{a}|{b}"})
        await self.lifecycle.resolve(everything=True, cause=f"link {a}-{b} removed")

    # -- providers ------------------------------------------------------------------------------------------------
    def _own_provider(self, provider_id: str, who: str | None) -> Provider:
        """The provider, if `who` may change it (None: an operator, who may change any)."""
        p = self.state.graph.provider(provider_id)
        # An agent may touch only what it registered; operator-registered providers (owner
        # "operator") and providers from before ownership existed (owner "") are operators' only.
        if p is None or (who is not None and p.owner != who):
            # Like contracts: another identity's provider is indistinguishable from a missing one.
            raise NotFound(
                f"provider {provider_id!r} not found (lease lapsed? register again)", field="provider_id"
            )
        return p

    async def put_provider(self, spec: ProviderSpec, owner: str | None = None) -> Provider:
        """Register or update; `owner` None is an operator acting (keeps the existing owner)."""
        region = self.state.graph.region_of(spec.zone)
        if region is None:
            raise ValidationFailed(f"unknown zone {spec.zone!r}", field="zone")
        now = self.clock()
        old = self.state.graph.provider(spec.id)
        if old is not None and owner is not None and old.owner != owner:
            raise Conflict(f"provider id {spec.id!r} is registered by another identity", field="id")
        provider = Provider(
            # Ownership never moves: an operator's update keeps the registrant as owner.
            owner=old.owner if old is not None else (owner or OPERATOR_OWNER),
            **spec.model_dump(),
            region=region,
            registered_at=old.registered_at if old else now,
            expires_at=now + spec.ttl_s if spec.ttl_s else None,
        )
        await self.store.put_provider(provider)
        self.state.graph.set_provider(provider)
        await self.negotiator.audit(
            actor="provider",
            subject=spec.id,
            kind="provider_" + ("updated" if old else "registered"),
            decision="registered" if not old else "updated",
        )
        await self.record("provider " + ("updated" if old else "registered"), {"provider": spec.id})
        if old is not None and old.model_dump(exclude={"expires_at"}) != provider.model_dump(
            exclude={"expires_at"}
        ):
            await self.lifecycle.resolve([spec.id], cause=f"provider {spec.id} changed")
            # Endpoints may have changed even when the allocation did not.
            self.sync.push_services({c.request.consumer for c in self.state.using(spec.id)})
        await self.lifecycle.resolve_degraded()
        return provider

    async def heartbeat(self, provider_id: str, who: str | None = None) -> Provider:
        p = self._own_provider(provider_id, who)
        if p.ttl_s is None:
            return p
        renewed = p.model_copy(update={"expires_at": self.clock() + p.ttl_s})
        await self.store.put_provider(renewed)
        self.state.graph.set_provider(renewed)
        return renewed

    async def delete_provider(self, provider_id: str, who: str | None = None) -> None:
        self._own_provider(provider_id, who)
        await self.store.delete_provider(provider_id)
        self.state.graph.remove_provider(provider_id)
        await self.negotiator.audit(
            actor="provider", subject=provider_id, kind="provider_deregistered", decision="deregistered"
        )
        await self.record("provider deregistered", {"provider": provider_id})
        await self.lifecycle.resolve([provider_id], cause=f"provider {provider_id} left")

    # -- policies ----------------------------------------------------------------------------------------------------
    async def reload_policies(self, actor: str, documents: list[tuple[str, str]] | None = None) -> PolicySet:
        """Swap the policies in force; on any error the old set stays and the error propagates."""
        if documents is not None:
            new = PolicySet.from_documents(documents)
        elif self.policies_dir:
            new = self.policy_set.reload(self.policies_dir)
        else:
            raise ValidationFailed("no policy directory configured and no documents given", field="documents")
        old_digest = self.policy_set.digest
        # Audit and publish first: if either fails the old set stays in force here too, so this
        # replica never enforces rules the others (and the audit log) do not know of.
        await self.negotiator.audit(
            actor=actor,
            subject="policies",
            kind="policy_change",
            decision=f"{len(new)} policies in force",
            details={"before": old_digest, "after": new.digest, "names": new.names},
        )
        await self.store.publish(
            ChangeEvent(
                kind="policy",
                op="put",
                key="policies",
                origin=self.origin,
                data={"documents": [list(d) for d in documents]} if documents is not None else {},
            )
        )
        self.policy_set = new
        # Policies shape allocations: every live contract is checked again under the new rules.
        await self.lifecycle.resolve(everything=True, cause="policies changed")
        return new
