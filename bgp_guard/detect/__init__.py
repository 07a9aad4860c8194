"""Detectors: pure functions from one update (plus the state they are handed) to findings.

- `hijack`: ARTEMIS E|0, E|1, S|0, S|1, Q|0, too-specific announcements, AS_SET origins.
- `path`: AS-path regular-expression and length rules (BGPalerter `path`).
- `rov`: RPKI route-origin validation, RFC 6811.
- `leak`: valley-free violations against AS relationships.
- `visibility`: a monitored prefix withdrawn by N peers, and visible again.
- `neighbours`: a new upstream or downstream AS next to one of our ASNs.
"""
