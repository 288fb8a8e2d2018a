"""vecroute: vector search with learned IVF routing."""
