//! The leaked-key scanner over any bytes, with a real key spliced in somewhere: never
//! panics; every key it reports parses, is in the text, and lines come in order.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tower_apikey::key::KeyFormat;
use tower_apikey::scan::find_keys;

/// One key per run, so the fuzzer need not find a CRC32 by mutation (and no key is shipped
/// in the seeds, where secret scanners would rightly flag it).
fn key() -> &'static [u8] {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let (_, key) = KeyFormat::default().generate().expect("OS randomness");
        key.expose().to_owned()
    })
    .as_bytes()
}

fuzz_target!(|data: &[u8]| {
    let cut = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let spliced = [&data[..cut], key(), &data[cut..]].concat();
    for text in [data, spliced.as_slice()] {
        let format = KeyFormat::default();
        let mut last_line = 1;
        for found in find_keys(&format, text) {
            assert!(format.parse(&found.key).is_ok());
            let key = found.key.expose();
            assert!(
                text.windows(key.len()).any(|w| w == key),
                "a reported key is in the text"
            );
            assert!(found.line >= last_line, "lines in order");
            last_line = found.line;
        }
    }
});
