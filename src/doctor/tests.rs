use super::*;

#[test]
fn a_token_warns_within_a_week_and_fails_once_expired() {
    let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
    let at = |text: &str| Some(text.parse::<jiff::Timestamp>().unwrap());
    let never = expiry_check("r", None, now);
    assert_eq!(never.verdict, Verdict::Ok);
    let later = expiry_check("r", at("2026-12-09T00:00:01Z"), now);
    assert_eq!(later.verdict, Verdict::Ok, "{later:?}");
    let soon = expiry_check("r", at("2026-12-04T00:00:00Z"), now);
    assert_eq!(soon.verdict, Verdict::Warn);
    assert!(soon.detail.contains("in 3 days"), "{soon:?}");
    let past = expiry_check("r", at("2026-11-30T00:00:00Z"), now);
    assert_eq!(past.verdict, Verdict::Fail);
    assert!(
        past.detail.contains("expired") && past.detail.contains("1 day ago"),
        "{past:?}"
    );
    assert!(
        past.fix.as_deref().unwrap().contains("token file"),
        "{past:?}"
    );
}

#[test]
fn tmpfs_is_told_from_a_disk() {
    assert_eq!(on_tmpfs(std::path::Path::new("/dev/shm")), Some(true));
    assert_eq!(
        on_tmpfs(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))),
        Some(false)
    );
}
