//! rsession-api (skeleton; being written).
