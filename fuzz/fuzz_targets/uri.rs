//! `nifty_pinner::uri::analyse` on arbitrary text: it must never panic, and what it returns
//! must hold together.
//!
//! Bytes that are UTF-8 are analysed as they are; others after a lossy conversion (token URIs
//! reach the pinner as strings, so invalid UTF-8 has already become U+FFFD by then).
#![no_main]

use cid::Cid;
use libfuzzer_sys::fuzz_target;
use nifty_pinner::uri::{Target, analyse};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check(&text);
});

fn check(uri: &str) {
    let got = analyse(uri);
    match &got {
        Ok(analysed) => {
            if let Target::Ipfs { cid, path } = &analysed.target {
                // The CID that gets pinned is the one its text names.
                let text = cid.to_string();
                match Cid::try_from(text.as_str()) {
                    Ok(again) => assert_eq!(&again, cid, "{uri:?}: {text} does not round-trip"),
                    Err(e) => panic!("{uri:?}: {text} does not parse back: {e}"),
                }
                assert!(
                    !path.starts_with('/'),
                    "{uri:?}: the path {path:?} has a leading '/'"
                );
            }
        }
        Err(e) => {
            assert!(!e.reason.name().is_empty(), "{uri:?}: an unnamed reason");
        }
    }
    // Pure: the same input gives the same answer.
    assert_eq!(analyse(uri), got, "{uri:?}: a second analysis differs");
}
