"""`meshctl demo`: the 2:17 AM story, on the embedded store, with real Envoy and real upstreams."""
