//! How a timestamp reads to the operator: local time with its zone, and how long ago. Shared by
//! what prints a time (`status`, a pause's description); it reads no state itself.

/// "42 seconds ago", "5 minutes ago", "3 hours ago", "2 days ago".
pub(crate) fn ago(seconds: i64) -> String {
    if seconds < 0 {
        return "in the future (clock skew?)".to_owned();
    }
    format!("{} ago", span(seconds))
}

/// A stretch of time in its largest whole unit: "42 seconds", "3 hours", "2 days".
pub(crate) fn span(seconds: i64) -> String {
    let seconds = seconds.max(0);
    let (count, unit) = match seconds {
        0..60 => (seconds, "second"),
        60..3600 => (seconds / 60, "minute"),
        3600..86_400 => (seconds / 3600, "hour"),
        _ => (seconds / 86_400, "day"),
    };
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

/// A timestamp as the operator's clock shows it: local time with its zone abbreviation
/// ("2026-11-23 19:31:02 CET"), and the RFC 3339 text as it is when it does not parse.
pub(crate) fn local_time(text: &str) -> String {
    match text.parse::<jiff::Timestamp>() {
        Ok(at) => at
            .to_zoned_datetime(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        Err(_) => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_a_person_would_say_them() {
        assert_eq!(ago(42), "42 seconds ago");
        assert_eq!(ago(60), "1 minute ago");
        assert_eq!(ago(300), "5 minutes ago");
        assert_eq!(ago(7200), "2 hours ago");
        assert_eq!(ago(86_400), "1 day ago");
        assert_eq!(ago(3 * 86_400), "3 days ago");
    }
}
