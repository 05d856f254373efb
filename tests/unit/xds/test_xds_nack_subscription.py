"""After a NACK, a changed subscription at the same type version is still answered (SotW and
delta): a gRPC client that rejected one route config and then needs another must get it."""

from __future__ import annotations

import pytest
import xds_test_harness as H
import xds_test_resources as R

from meshctl.xds import ROUTE, Snapshot


@pytest.mark.parametrize("delta", [False, True])
async def test_new_subscription_after_a_nack_is_answered(xds: H.Harness, delta: bool) -> None:
    res = [
        R.api_listener("l1", "rc1"),
        R.route("rc1", ["a"]),
        R.route("rc2", ["a"]),
        R.cluster("a"),
        R.cla("a"),
    ]
    xds.cache.set_snapshot("g", Snapshot.build(res))
    c = xds.client("g", delta=delta)
    if delta:
        await c.delta_request(ROUTE, subscribe=["rc1"])
    else:
        await c.request(ROUTE, ["rc1"])
    first = await c.recv()
    assert H.names_of(first) == ["rc1"]
    if delta:
        await c.delta_request(ROUTE, nonce=first.nonce, error="bad route rc1")
    else:
        await c.request(ROUTE, ["rc1"], nonce=first.nonce, error="bad route rc1")
    await xds.wait_for(lambda: xds.recorder.nacks)
    # The same rejected content is not sent again...
    await c.expect_none(0.3)
    # ...but the client now also needs rc2: that is new content, and it goes out.
    if delta:
        await c.delta_request(ROUTE, subscribe=["rc2"])
    else:
        await c.request(ROUTE, ["rc1", "rc2"], nonce=first.nonce)
    second = await c.recv(2.0)
    assert "rc2" in H.names_of(second)
