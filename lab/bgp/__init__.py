"""BGP in the lab: real routers (bird2) in namespaces of their own on one peering LAN, and
our guard (`overcast guard watch`) peering with some of them, for the scenarios that prove
what the guard sees (`hijack`, `leak`). `plan` is pure; `bird` renders each router's
config and reads its state; `build` applies a plan and removes it with the lab."""
