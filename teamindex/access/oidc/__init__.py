"""Trusted publishing (issue 15): CI jobs trade their OIDC identity token for a short-lived
upload token, so no long-lived upload secret is stored in CI.

claims.py says what a publisher matches (pure), keys.py gets issuers' signing keys,
verify.py checks a token with PyJWT, exchange.py mints the upload token.
"""
