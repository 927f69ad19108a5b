//! Small formatting helpers shared by the commands.

/// A probability as people read it: simple fractions as such (`1/3`),
/// anything else as a percentage.
pub fn fraction(p: f64) -> String {
    for d in 1..=64u32 {
        let n = (p * d as f64).round();
        if n >= 1.0 && (n / d as f64 - p).abs() < 1e-6 {
            return if d == 1 {
                "1".into()
            } else {
                format!("{}/{d}", n as u32)
            };
        }
    }
    format!("{:.4}%", p * 100.0)
}
