"""The background worker: builds clusterings and trains routers from logged queries."""
