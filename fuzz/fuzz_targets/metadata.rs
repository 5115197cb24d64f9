//! `nifty_pinner::metadata::extract` on arbitrary bytes: it must never panic, and the assets
//! it lists must be bounded, distinct and pinnable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nifty_pinner::metadata::{MAX_ASSETS, extract, parse};
use nifty_pinner::uri::Target;

fuzz_target!(|data: &[u8]| {
    let got = extract(data);
    // extract is parse, then the assets of what parsed.
    assert_eq!(
        got.as_ref().err(),
        parse(data).as_ref().err(),
        "extract and parse disagree"
    );
    let Ok(assets) = got else {
        return;
    };
    assert!(
        assets.pinnable.len() <= MAX_ASSETS,
        "{} pinnable assets, more than {MAX_ASSETS}",
        assets.pinnable.len()
    );
    for (i, asset) in assets.pinnable.iter().enumerate() {
        assert!(
            matches!(asset.target, Target::Ipfs { .. }),
            "{}: a pinnable asset not on IPFS: {:?}",
            asset.role,
            asset.target
        );
        assert!(!asset.role.is_empty(), "an asset without a role");
        if let Some(first) = assets.pinnable[..i]
            .iter()
            .find(|a| a.target == asset.target)
        {
            panic!(
                "{:?} is listed twice, as {} and {}",
                asset.target, first.role, asset.role
            );
        }
    }
});
