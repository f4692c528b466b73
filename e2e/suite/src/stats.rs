//! Summary statistics of the benchmarks' samples.

/// Nearest-rank percentile `p` (0 to 100) of `sorted` (ascending); NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    #[test]
    fn nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(super::percentile(&v, 50.0), 2.0);
        assert_eq!(super::percentile(&v, 95.0), 4.0);
        assert!(super::percentile(&[], 50.0).is_nan());
    }
}
