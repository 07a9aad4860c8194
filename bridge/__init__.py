"""Host-side data plane: keys, WireGuard tunnels, VXLAN, routes, MTU and failover."""
