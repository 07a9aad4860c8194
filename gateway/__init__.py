"""Encrypted SSO gateway: OIDC login, per-app policy, signed identity to upstream apps."""
