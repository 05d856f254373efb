"""An HTTP upstream in its own process, for tests where a provider's process must die for real.

Run as a script: prints the bound port on stdout, then serves until killed. In-process upstreams
keep answering on established keep-alive connections after `stop()`; a killed process does not.
"""

from __future__ import annotations

import signal
import sys

from meshctl.local.upstream import UpstreamServer

if __name__ == "__main__":
    server = UpstreamServer(sys.argv[1]).start()
    print(server.port, flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()
