//! Key parsing: never panics; an accepted key has an id made of id characters, found in it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_apikey::key::{KeyFormat, KeyId, PresentedKey};

fuzz_target!(|data: &[u8]| {
    let Ok(key) = PresentedKey::new(data) else {
        return;
    };
    if let Ok(parsed) = KeyFormat::default().parse(&key) {
        assert!(KeyId::new(parsed.id()).is_ok());
        assert!(data.starts_with(format!("tak_{}_", parsed.id()).as_bytes()));
        assert!(data.ends_with(parsed.secret()));
    }
});
