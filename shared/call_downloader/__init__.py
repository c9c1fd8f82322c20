"""Call Downloader's common library, organised by capability (config, db, storage, events,
audio, net, security, pipeline, observability, server)."""
