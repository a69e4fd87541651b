//! Time arithmetic that cannot panic. The configuration bounds every duration, but a
//! date read from the state file, or a clock set far off, must not bring the daemon down:
//! sums that would leave the representable range stop at its edge instead.

use std::time::Duration;

use time::OffsetDateTime;

/// How far ahead a deadline is put when `now + after` is not representable: further than any
/// wait the probe has, and far from the end of the monotonic clock.
const FAR: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The instant `after` from now, or a century away if that overflows.
pub fn deadline(after: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(after).unwrap_or_else(|| now + FAR)
}

/// `t + d`, or the last representable date.
pub fn later(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    t.saturating_add(span(d))
}

/// `t - d`, or the first representable date.
pub fn earlier(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    t.saturating_sub(span(d))
}

fn span(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn sums_stop_at_the_edges_of_the_calendar() {
        let end = datetime!(9999-12-31 23:59:59.999_999_999 UTC);
        let start = datetime!(-9999-01-01 00:00 UTC);
        let day = Duration::from_secs(86_400);
        assert_eq!(later(end, day), end);
        assert_eq!(later(end - time::Duration::DAY, Duration::MAX), end);
        assert_eq!(earlier(start, day), start);
        let t = datetime!(2026-11-30 15:00 UTC);
        assert_eq!(later(t, day), datetime!(2026-12-01 15:00 UTC));
        assert_eq!(earlier(t, day), datetime!(2026-11-29 15:00 UTC));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_never_overflows() {
        let now = tokio::time::Instant::now();
        assert!(deadline(Duration::MAX) > now + Duration::from_secs(50 * 365 * 86_400));
        assert_eq!(
            deadline(Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }
}
