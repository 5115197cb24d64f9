//! `nifty_pinner::analysis::plan` on arbitrary token URIs (including inline `data:`
//! documents, which it concludes without a fetch): it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nifty_pinner::analysis::{Plan, plan};

fuzz_target!(|data: &[u8]| {
    let uri = String::from_utf8_lossy(data);
    match plan(Some(&uri)) {
        Plan::Done(analysis) => {
            // Each root is pinned once.
            for (i, r) in analysis.resources.iter().enumerate() {
                assert!(
                    !analysis.resources[..i].iter().any(|o| o.cid == r.cid),
                    "{uri:?}: {} is listed twice",
                    r.cid
                );
            }
        }
        Plan::Fetch { target, root } => {
            assert_eq!(
                root.as_ref(),
                target.cid(),
                "{uri:?}: the root is not the target's"
            );
        }
    }
});
