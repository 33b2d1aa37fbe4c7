"""Who is calling: mTLS certificate facts, API keys, JWT/JWKS, and the little CA (pki)."""
