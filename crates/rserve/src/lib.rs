//! rserve (skeleton; being written).
