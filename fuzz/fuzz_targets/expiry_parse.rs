//! Expiry parsing: never panics; whatever parses resolves (or says why not) and displays as
//! text that parses back to the same expiry time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_apikey::lifecycle::Expiry;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expiry) = text.parse::<Expiry>() else {
        return;
    };
    let now: jiff::Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
    let Ok(at) = expiry.resolve(now) else {
        return;
    };
    if let Some(at) = at {
        if matches!(expiry, Expiry::After(_)) {
            assert!(at > now, "a positive duration ends after now");
        }
    }
    let again: Expiry = expiry.to_string().parse().expect("display parses back");
    assert_eq!(again.resolve(now).ok(), Some(at), "display round-trips");
});
