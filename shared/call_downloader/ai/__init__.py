"""The AI service client (SPEC 3.2). Retry delays: `call_downloader.net.backoff`."""
