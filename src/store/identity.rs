//! A store's identity: a random id kept both in the engine and in a file beside it
//! (`<store dir>/state.id`), so a store whose state was lost — a truncated or deleted file,
//! another disk mounted in its place — is refused at start, never served as an empty one.

use std::path::{Path, PathBuf};

use super::kv::{KeyRange, KvEngine};
use super::StoreError;

/// The engine's key for the id.
const KEY: &[u8] = b"~store/id";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Refused(String),
}

/// What the id file and the engine say together.
#[derive(Debug, PartialEq, Eq)]
enum Standing {
    /// Both name the same store.
    Known,
    /// Neither has an id: a new store, or one from before ids (it keeps its state).
    Unnamed,
    /// The engine has its id, the file is gone: written again from the engine.
    FileMissing(String),
    /// The file names a store the engine has no id of: its state is gone.
    Lost,
    /// They name two stores.
    Foreign { file: String, engine: String },
}

fn standing(file: Option<String>, engine: Option<String>) -> Standing {
    match (file, engine) {
        (Some(file), Some(engine)) if file == engine => Standing::Known,
        (Some(file), Some(engine)) => Standing::Foreign { file, engine },
        (Some(_), None) => Standing::Lost,
        (None, Some(engine)) => Standing::FileMissing(engine),
        (None, None) => Standing::Unnamed,
    }
}

/// The id file of the engine kept in `state_dir`.
fn id_file(state_dir: &Path) -> PathBuf {
    state_dir.with_extension("id")
}

/// Checks that the engine in `state_dir` is the store its id file names, giving a new store
/// its id (durable before this returns); refuses a store whose state was lost.
pub async fn check<E: KvEngine>(engine: &E, state_dir: &Path) -> Result<(), IdentityError> {
    let path = id_file(state_dir);
    let file = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text.trim().to_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => {
            return Err(IdentityError::Refused(format!(
                "could not read {}: {error}",
                path.display()
            )))
        }
    };
    let stored = engine
        .get(KEY)?
        .map(|id| String::from_utf8_lossy(id.as_ref()).into_owned());
    let dir = state_dir.display();
    match standing(file, stored) {
        Standing::Known => Ok(()),
        Standing::FileMissing(id) => write_id_file(&path, &id),
        Standing::Unnamed => {
            let had_state = !engine.scan(KeyRange::prefix(b""), 1)?.is_empty();
            let id = hex::encode(rand::random::<[u8; 16]>());
            engine.insert(KEY, id.as_bytes())?;
            engine.flush().await?;
            write_id_file(&path, &id)?;
            if had_state {
                tracing::info!(dir = %dir, "The store had no id yet; it has one now.");
            }
            Ok(())
        }
        Standing::Lost => Err(IdentityError::Refused(format!(
            "the store in {dir} has lost its state: {} names a store, but {dir} holds none of it (a truncated, damaged or replaced file?). otpd does not serve an empty state in its place. Restore {dir} from a backup; or, to start empty and lose what it held, move {dir} and {} aside.",
            path.display(),
            path.display()
        ))),
        Standing::Foreign { file, engine } => Err(IdentityError::Refused(format!(
            "the store in {dir} is not the one {} names (store {engine}, not {file}): another store's files were put in its place. Put the right files back, or move {} aside to keep this store.",
            path.display(),
            path.display()
        ))),
    }
}

/// Writes `id` to `path` durably (a temporary file renamed over it).
fn write_id_file(path: &Path, id: &str) -> Result<(), IdentityError> {
    let written = (|| {
        let temporary = path.with_extension("id.new");
        std::fs::write(&temporary, format!("{id}\n"))?;
        std::fs::File::open(&temporary)?.sync_all()?;
        std::fs::rename(&temporary, path)?;
        if let Some(parent) = path.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok::<_, std::io::Error>(())
    })();
    written.map_err(|error| {
        IdentityError::Refused(format!("could not write {}: {error}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryEngine;

    #[test]
    fn the_file_and_the_engine_are_read_together() {
        let id = || Some("a1".to_owned());
        assert_eq!(standing(id(), id()), Standing::Known);
        assert_eq!(standing(None, None), Standing::Unnamed);
        assert_eq!(standing(None, id()), Standing::FileMissing("a1".into()));
        assert_eq!(standing(id(), None), Standing::Lost);
        assert_eq!(
            standing(id(), Some("b2".into())),
            Standing::Foreign {
                file: "a1".into(),
                engine: "b2".into()
            }
        );
    }

    #[tokio::test]
    async fn a_store_that_lost_its_state_is_refused_and_a_new_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let engine = MemoryEngine::default();
        check(&engine, &state).await.unwrap();
        check(&engine, &state).await.unwrap();
        assert!(id_file(&state).exists());

        // The same file beside an engine that holds nothing: refused, naming the directory.
        let error = check(&MemoryEngine::default(), &state).await.unwrap_err();
        assert!(error.to_string().contains("has lost its state"), "{error}");
        assert!(
            error.to_string().contains(&state.display().to_string()),
            "{error}"
        );

        // The file gone: written again from the engine.
        std::fs::remove_file(id_file(&state)).unwrap();
        check(&engine, &state).await.unwrap();
        assert!(id_file(&state).exists());
    }
}
