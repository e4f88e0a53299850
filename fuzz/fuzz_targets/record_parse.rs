//! Record parsing: never panics; whatever parses displays in lower case and parses back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_apikey::hash::Pbkdf2Hash;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(record) = text.parse::<Pbkdf2Hash>() {
        let shown = record.to_string();
        assert_eq!(shown, shown.to_ascii_lowercase(), "display is lower case");
        assert_eq!(
            shown.parse::<Pbkdf2Hash>().as_ref(),
            Ok(&record),
            "display round-trips"
        );
        assert!(
            record.iterations() >= 1 && record.iterations() <= tower_apikey::hash::MAX_ITERATIONS
        );
    }
});
