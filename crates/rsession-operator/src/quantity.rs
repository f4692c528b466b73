//! Byte amounts of Kubernetes quantities (`512Mi`, `1G`, `1.5Gi`, `1e9`), for sizing the
//! memory-backed /tmp against the memory limit. k8s-openapi keeps a `Quantity` as its string.
//!
//! Follows the grammar of `k8s.io/apimachinery/pkg/api/resource` (`quantity.go`): a signed
//! decimal number, then a binary suffix (`Ki` … `Ei`), a decimal suffix (`m`, `k`, `M` … `E`)
//! or a decimal exponent (`e3`, `E-2`).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// One mebibyte, the unit the /tmp size is rounded down to.
pub const MIB: u64 = 1 << 20;

/// Whole bytes of `q`, rounded down; `None` for a malformed, negative or overflowing quantity.
pub fn bytes(q: &Quantity) -> Option<u64> {
    let s = q.0.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    // value = digits * 10^(exp10 - fraction.len()) * 2^exp2
    let digits: u128 = format!("{whole}{fraction}").parse().ok()?;
    let (exp2, exp10): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        e => (0, e.strip_prefix(['e', 'E'])?.parse().ok()?),
    };
    let scale = exp10 - i32::try_from(fraction.len()).ok()?;
    let pow10 = 10u128.checked_pow(scale.unsigned_abs())?;
    let value = digits.checked_mul(1u128 << exp2)?;
    let value = if scale >= 0 {
        value.checked_mul(pow10)?
    } else {
        value / pow10
    };
    u64::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Option<u64> {
        bytes(&Quantity(s.into()))
    }

    #[test]
    fn binary_and_decimal_suffixes_give_bytes() {
        assert_eq!(b("512Mi"), Some(512 * MIB));
        assert_eq!(b("2Gi"), Some(2 << 30));
        assert_eq!(b("1G"), Some(1_000_000_000));
        assert_eq!(b("128974848"), Some(128_974_848));
        assert_eq!(b("129e6"), Some(129_000_000));
        assert_eq!(b("1.5Gi"), Some(3 << 29));
        assert_eq!(b("1500m"), Some(1));
        assert_eq!(b("+1Ki"), Some(1024));
    }

    #[test]
    fn malformed_or_negative_quantities_have_no_byte_count() {
        for bad in ["", "Gi", "1.2.3Gi", "-1Gi", "1Xi", "1e", "99999999Ei"] {
            assert_eq!(b(bad), None, "{bad}");
        }
    }
}
