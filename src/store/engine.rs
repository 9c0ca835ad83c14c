//! Which engine keeps a node's state (`store.engine`, or for a store it does not name, the
//! engine that made the store, and the LSM tree for a new one), and the refusal to open a
//! store directory with the engine that did not make it.

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

/// The engine for the store in `dir`: the one `named` (`store.engine`); when none is, the one
/// whose files are there, and for a new store the LSM tree, or sled when sled's compression is
/// asked for (`sled_compression`, a setting of sled's alone). Files of neither engine are
/// refused rather than opened as a new store beside them.
pub fn engine_for(
    dir: &Path,
    named: Option<EngineKind>,
    sled_compression: bool,
) -> Result<EngineKind, StoreError> {
    if let Some(kind) = named.or_else(|| EngineKind::found_in(dir)) {
        return Ok(kind);
    }
    if !holds_no_store(dir)? {
        return Err(StoreError::Io(format!(
            "the store in {} holds files neither engine made: set store.engine = \"sled\" or \
             \"lsm\" (OTPD__STORE__ENGINE) to the engine that made them, or {START_EMPTY}",
            dir.display()
        )));
    }
    Ok(if sled_compression {
        EngineKind::Sled
    } else {
        EngineKind::Lsm
    })
}

/// Whether `dir` is absent or holds nothing but the lock file the LSM engine takes first.
fn holds_no_store(dir: &Path) -> Result<bool, StoreError> {
    let unreadable = |error: std::io::Error| {
        StoreError::Io(format!(
            "could not read the store directory {}: {error}",
            dir.display()
        ))
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(error) => return Err(unreadable(error)),
    };
    for entry in entries {
        if entry.map_err(unreadable)?.file_name() != LOCK_FILE {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What a refusal to open a store directory offers besides the setting that opens it.
const START_EMPTY: &str =
    "move the directory and the state.id file beside it aside to start an empty store";

/// The file the LSM engine locks its directory with, made before any of fjall's.
pub(super) const LOCK_FILE: &str = "lock";

/// Refuses a directory another engine made, naming the setting that opens it.
pub fn ensure_made_by(dir: &Path, kind: EngineKind) -> Result<(), StoreError> {
    match EngineKind::found_in(dir) {
        Some(found) if found != kind => Err(StoreError::Io(format!(
            "the store in {} was made with store.engine = \"{}\", and an existing store \
             cannot change engine: set store.engine = \"{}\" (OTPD__STORE__ENGINE), or \
             {START_EMPTY}",
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
    fn an_unnamed_engine_is_the_one_that_made_the_store_and_the_lsm_tree_for_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let unnamed = |compression| engine_for(&state, None, compression).unwrap();
        assert_eq!(unnamed(false), EngineKind::Lsm, "no directory yet");
        assert_eq!(
            unnamed(true),
            EngineKind::Sled,
            "sled's compression asked for"
        );
        std::fs::create_dir(&state).unwrap();
        std::fs::write(state.join(LOCK_FILE), b"").unwrap();
        assert_eq!(unnamed(false), EngineKind::Lsm, "only the lock file");
        std::fs::write(state.join("conf"), b"segment_size: 524288\n").unwrap();
        assert_eq!(unnamed(false), EngineKind::Sled, "a sled store");
        std::fs::remove_file(state.join("conf")).unwrap();
        std::fs::create_dir(state.join("journals")).unwrap();
        assert_eq!(unnamed(true), EngineKind::Lsm, "an LSM tree");
        assert_eq!(
            engine_for(&state, Some(EngineKind::Sled), false).unwrap(),
            EngineKind::Sled,
            "a named engine is taken as named (and refused on opening if it did not make it)"
        );
    }

    #[test]
    fn files_of_neither_engine_are_refused_rather_than_taken_for_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db"), b"a sled log whose conf is gone").unwrap();
        let Err(StoreError::Io(text)) = engine_for(dir.path(), None, false) else {
            panic!("files of neither engine were taken for a new store");
        };
        assert!(
            text.contains(&dir.path().display().to_string())
                && text.contains("set store.engine = \"sled\" or \"lsm\""),
            "{text}"
        );
    }

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
