"""The service layer: live collections (store row + in-memory index), writes, search, jobs."""
