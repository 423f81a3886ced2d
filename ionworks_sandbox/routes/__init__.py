"""HTTP routes, one module per Ionworks resource."""
