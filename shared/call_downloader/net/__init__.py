"""The network edge: SSRF guard (`ssrf`), bounded downloads (`download`), Standard Webhooks
signing and posting (`webhooks`), retry delays (`backoff`). Nothing connects at import time."""
