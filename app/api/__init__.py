"""The HTTP layer: thin routes that parse, call the service and shape responses."""
