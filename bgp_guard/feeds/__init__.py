"""Feeds: each turns one source of BGP data into an iterator of `bgp_guard.update.Update`,
with a `PeerDown` in the same stream when a peer's session ends (the guard withdraws all that
peer's routes; no feed keeps a copy of what each peer announced).

- `mrt.MrtFeed`: MRT files (RFC 6396), gzip or bzip2.
- `ris_live.RisLiveFeed`: RIS-live `ris_message` JSON lines.
- `ris_websocket.RisLiveClient`: the RIS-live websocket, subscribed to what the guard watches.
- `bmp.BmpListener`: BMP (RFC 7854) from routers.
- `session.BgpSpeaker`: a live BGP session (RFC 4271).

Every feed counts records, updates and errors in a `FeedStats` (also exported to Prometheus),
and logs each bad record with its position instead of stopping.
"""

# RIPE RIS-live's websocket (https://ris-live.ripe.net/manual/); `client` names us to RIPE.
RIS_LIVE_URL = "wss://ris-live.ripe.net/v1/ws/?client=overcast"
