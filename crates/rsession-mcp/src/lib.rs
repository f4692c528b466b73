//! rsession-mcp (skeleton; being written).
