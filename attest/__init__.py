"""Attested join: a site gets its tunnels and its WireGuard key only after its TPM proves
what it runs (TCG remote attestation: enrolment by credential activation, measured state in
a PCR with an event log, quotes over a fresh nonce)."""
