//! Removing a bench's big temp dirs when `make bench` is interrupted: a panic drops them
//! (and the processes the bench started) as it unwinds, but SIGINT and SIGTERM end the
//! process without unwinding, and the status bench's store alone is 10 GB.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Temp dirs to remove if the bench is interrupted.
#[derive(Clone, Default)]
pub struct Doomed(Arc<Mutex<Vec<PathBuf>>>);

impl Doomed {
    /// Watches for SIGINT and SIGTERM on a thread of its own; on either, removes every dir
    /// added so far and exits with 130.
    pub fn watch() -> Doomed {
        let doomed = Doomed::default();
        let dirs = doomed.clone();
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            });
            let list = dirs.0.lock().map(|l| l.clone()).unwrap_or_default();
            for dir in list {
                // The bench may still be writing into it: try again once.
                if std::fs::remove_dir_all(&dir).is_err() {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    let _ = std::fs::remove_dir_all(&dir);
                }
                eprintln!("interrupted: removed {}", dir.display());
            }
            std::process::exit(130);
        });
        doomed
    }

    /// Adds `dir` to what an interruption removes.
    pub fn add(&self, dir: &std::path::Path) {
        if let Ok(mut l) = self.0.lock() {
            l.push(dir.to_owned());
        }
    }
}
