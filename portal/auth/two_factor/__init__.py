"""Two-factor authentication: the authenticator app (TOTP), passkeys (WebAuthn), recovery codes.

services.py holds the rules, routes.py the pages (on the auth blueprint), pending.py the
half-done sign-in between the password and the second factor.
"""
