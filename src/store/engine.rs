//! Which engine keeps a node's state (`store.engine`), and the refusal to open a store
//! directory with the engine that did not make it.

use serde::Deserialize;
use std::path::Path;

use super::StoreError;

/// The engine under the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// sled 0.34: a B-tree over a log of pages.
    Sled,
    /// fjall: an LSM tree, whose compaction keeps the disk near what is live.
    Lsm,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Sled => "sled",
            EngineKind::Lsm => "lsm",
        }
    }

    /// What only this engine leaves in its directory (a file for sled, a folder for fjall).
    fn mark(self) -> &'static str {
        match self {
            EngineKind::Sled => "conf",
            EngineKind::Lsm => "journals",
        }
    }

    /// The engine whose files are in `dir`, if any.
    fn found_in(dir: &Path) -> Option<EngineKind> {
        [EngineKind::Sled, EngineKind::Lsm]
            .into_iter()
            .find(|kind| dir.join(kind.mark()).exists())
    }
}

/// Refuses a directory another engine made, naming the setting that opens it.
pub fn ensure_made_by(dir: &Path, kind: EngineKind) -> Result<(), StoreError> {
    match EngineKind::found_in(dir) {
        Some(found) if found != kind => Err(StoreError::Io(format!(
            "the store in {} was made with store.engine = \"{}\", and an existing store \
             cannot change engine: set store.engine = \"{}\" (OTPD__STORE__ENGINE), or move the \
             directory and the state.id file beside it aside to start an empty store",
            dir.display(),
            found.name(),
            found.name()
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_refused_only_by_the_engine_that_did_not_make_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ensure_made_by(dir.path(), EngineKind::Lsm).is_ok());
        assert!(ensure_made_by(dir.path(), EngineKind::Sled).is_ok());
        std::fs::write(dir.path().join("conf"), b"segment_size: 524288\n").unwrap();
        assert!(ensure_made_by(dir.path(), EngineKind::Sled).is_ok());
        let Err(StoreError::Io(text)) = ensure_made_by(dir.path(), EngineKind::Lsm) else {
            panic!("an lsm engine would open a sled store");
        };
        assert!(
            text.contains("made with store.engine = \"sled\"")
                && text.contains("set store.engine = \"sled\""),
            "{text}"
        );
    }
}
