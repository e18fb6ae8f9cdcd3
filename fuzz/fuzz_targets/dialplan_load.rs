//! Any text as a dialplan file: a `Dialplan` or diagnostics, never a panic.
#![no_main]
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use telepay::telephony::ivr::Dialplan;
use telepay::telephony::prompts::PromptLibrary;
use libfuzzer_sys::fuzz_target;

fn library() -> Arc<PromptLibrary> {
    static LIB: OnceLock<Arc<PromptLibrary>> = OnceLock::new();
    LIB.get_or_init(|| Arc::new(PromptLibrary::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../prompts/en"))).unwrap()))
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    match Dialplan::from_sources(vec![(PathBuf::from("f.toml"), text)], library()) {
        Ok(plan) => {
            let _ = plan.entry_for("pay");
        }
        Err(e) => {
            // Every diagnostic has a line inside the file.
            let lines = String::from_utf8_lossy(data).lines().count().max(1);
            for d in e.diagnostics() {
                assert!(d.line >= 1 && d.line <= lines + 1, "{d}");
            }
        }
    }
});
