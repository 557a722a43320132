"""Partner data sharing: registry, share publishing, the Delta Sharing server."""
