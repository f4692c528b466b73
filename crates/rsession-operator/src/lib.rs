//! rsession-operator (skeleton; being written).
