//! Exact conversion between decimal amounts ("0.1" ETH, "1000" USDC) and integer base units.
//!
//! Money is never a float: every amount a person writes becomes a `U256` here, and every amount
//! shown to a person is formatted back here.

use alloy_primitives::U256;

/// Why a decimal amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitsError {
    /// Not of the form `123` or `123.456`.
    #[error(
        "`{0}` is not a plain decimal number (digits with an optional `.`, e.g. `0.1`; no signs, exponents or spaces)"
    )]
    Malformed(String),
    /// More fractional digits than the unit has.
    #[error("`{input}` has more than {decimals} decimal places")]
    TooPrecise {
        /// The amount as written.
        input: String,
        /// The unit's decimals.
        decimals: u8,
    },
    /// Larger than 2^256 - 1 base units.
    #[error("`{0}` is too large")]
    Overflow(String),
}

/// Parses a non-negative decimal amount into base units with `decimals` decimal places.
///
/// `parse_units("0.1", 18)` is 10^17 wei. Exponents, signs, whitespace, empty parts and more
/// fractional digits than `decimals` are refused rather than rounded.
pub fn parse_units(input: &str, decimals: u8) -> Result<U256, UnitsError> {
    let malformed = || UnitsError::Malformed(input.chars().take(80).collect());
    let (int, frac) = match input.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (input, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
        return Err(malformed());
    }
    let frac = frac.unwrap_or("");
    let significant = frac.trim_end_matches('0');
    if significant.len() > usize::from(decimals) {
        return Err(UnitsError::TooPrecise { input: input.to_owned(), decimals });
    }
    let overflow = || UnitsError::Overflow(input.chars().take(80).collect());
    let digits = format!("{int}{significant:0<width$}", width = usize::from(decimals));
    U256::from_str_radix(&digits, 10).map_err(|_| overflow())
}

/// Parses a non-negative decimal integer of base units (a wei amount as the API sends it).
pub fn parse_base_units(input: &str) -> Result<U256, UnitsError> {
    if input.contains('.') {
        return Err(UnitsError::Malformed(input.chars().take(80).collect()));
    }
    parse_units(input, 0)
}

/// Formats base units as a decimal amount with `decimals` places, trailing zeros removed
/// (`format_units(10^17, 18)` is `"0.1"`).
pub fn format_units(amount: U256, decimals: u8) -> String {
    let s = amount.to_string();
    let d = usize::from(decimals);
    if d == 0 {
        return s;
    }
    let padded = format!("{s:0>width$}", width = d + 1);
    let (int, frac) = padded.split_at(padded.len() - d);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() { int.to_owned() } else { format!("{int}.{frac}") }
}

/// [`format_units`] for US dollars: at least two decimals, so columns read as money
/// (`2.50`, `0.075`, `3.00`).
pub fn format_usd(amount: U256, decimals: u8) -> String {
    let s = format_units(amount, decimals);
    match s.split_once('.') {
        Some((i, f)) if f.len() < 2 => format!("{i}.{f:0<2}"),
        Some(_) => s,
        None => format!("{s}.00"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wei(s: &str) -> U256 {
        U256::from_str_radix(s, 10).unwrap()
    }

    #[test]
    fn parses_exactly() {
        assert_eq!(parse_units("0.1", 18).unwrap(), wei("100000000000000000"));
        assert_eq!(parse_units("1", 18).unwrap(), wei("1000000000000000000"));
        assert_eq!(parse_units("10.0", 18).unwrap(), wei("10000000000000000000"));
        assert_eq!(parse_units("0.000000000000000001", 18).unwrap(), U256::from(1));
        assert_eq!(parse_units("1000", 6).unwrap(), U256::from(1_000_000_000u64));
        assert_eq!(parse_units("0", 18).unwrap(), U256::ZERO);
        assert_eq!(parse_units("1.500000000000000000000", 18).unwrap(), wei("1500000000000000000"));
        // Floats would get this wrong: 0.1 + 0.2 style sums must stay exact.
        assert_eq!(parse_units("0.3", 18).unwrap(), parse_units("0.1", 18).unwrap() * U256::from(3));
    }

    #[test]
    fn refuses_what_is_not_a_plain_decimal() {
        for bad in
            ["", ".", "1.", ".5", "1e18", "1E18", "-1", "+1", " 1", "1 ", "0x10", "1,5", "1.2.3", "NaN", "inf", "١"]
        {
            assert!(matches!(parse_units(bad, 18), Err(UnitsError::Malformed(_))), "{bad:?} should be malformed");
        }
    }

    #[test]
    fn refuses_more_than_the_unit_has() {
        assert!(matches!(parse_units("0.0000000000000000001", 18), Err(UnitsError::TooPrecise { .. })));
        assert!(matches!(parse_units("0.1234567", 6), Err(UnitsError::TooPrecise { .. })));
        assert!(matches!(parse_base_units("1.5"), Err(UnitsError::Malformed(_))));
    }

    #[test]
    fn huge_values() {
        let max = U256::MAX.to_string();
        assert_eq!(parse_base_units(&max).unwrap(), U256::MAX);
        let over = format!("{max}0");
        assert!(matches!(parse_base_units(&over), Err(UnitsError::Overflow(_))));
        assert!(matches!(parse_units(&max, 18), Err(UnitsError::Overflow(_))));
        assert_eq!(
            parse_units("1000000000000000000000000000", 18).unwrap(),
            wei("1000000000000000000000000000000000000000000000")
        );
    }

    #[test]
    fn formats_back() {
        assert_eq!(format_units(wei("100000000000000000"), 18), "0.1");
        assert_eq!(format_units(U256::ZERO, 18), "0");
        assert_eq!(format_units(U256::from(1), 18), "0.000000000000000001");
        assert_eq!(format_units(wei("1500000000000000000"), 18), "1.5");
        assert_eq!(format_units(U256::from(1_000_000_000u64), 6), "1000");
        assert_eq!(format_units(U256::from(42), 0), "42");
        for s in ["0.1", "123.456", "0.000001", "99999999999"] {
            assert_eq!(format_units(parse_units(s, 18).unwrap(), 18), s);
        }
    }
}
