//! The operator's blocklist of phone numbers and E.164 prefixes: entry validation and
//! matching, pure. Persisted by the store, edited through the admin routes.

use std::collections::BTreeMap;

/// The most entries the blocklist holds, so memory stays bounded.
pub const MAX_ENTRIES: usize = 10_000;
/// Longest note kept with an entry, in characters.
pub const MAX_NOTE_CHARS: usize = 200;
const MIN_DIGITS: usize = 2;
const MAX_DIGITS: usize = 15;

pub use crate::domain::records::BlockEntry;

/// Why an entry was refused; the text says what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum InvalidEntry {
    #[error("'entry' must be '+' and {MIN_DIGITS} to {MAX_DIGITS} digits: an E.164 number such as +2348012345678, or a prefix such as +2348")]
    Entry,
    #[error("'note' must be at most {MAX_NOTE_CHARS} characters")]
    Note,
}

/// Checks an entry's text (`+` and 2–15 digits).
pub fn validate_entry(raw: &str) -> Result<String, InvalidEntry> {
    let digits = raw.strip_prefix('+').ok_or(InvalidEntry::Entry)?;
    let well_formed = (MIN_DIGITS..=MAX_DIGITS).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit());
    if well_formed {
        Ok(raw.to_owned())
    } else {
        Err(InvalidEntry::Entry)
    }
}

pub fn validate_note(note: Option<&str>) -> Result<(), InvalidEntry> {
    match note {
        Some(note) if note.chars().count() > MAX_NOTE_CHARS => Err(InvalidEntry::Note),
        _ => Ok(()),
    }
}

/// The entries, by their text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Blocklist {
    entries: BTreeMap<String, BlockEntry>,
}

impl Blocklist {
    pub fn new(entries: impl IntoIterator<Item = BlockEntry>) -> Self {
        Blocklist {
            entries: entries
                .into_iter()
                .map(|entry| (entry.entry.clone(), entry))
                .collect(),
        }
    }

    /// Whether the E.164 number `e164` is blocked: it equals an entry or starts with one.
    pub fn blocks(&self, e164: &str) -> bool {
        // Each prefix of the number at most once: 15 look-ups, however long the list.
        (MIN_DIGITS + 1..=e164.len()).any(|end| {
            e164.get(..end)
                .is_some_and(|prefix| self.entries.contains_key(prefix))
        })
    }

    pub fn entries(&self) -> impl Iterator<Item = &BlockEntry> {
        self.entries.values()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, entry: &str) -> bool {
        self.entries.contains_key(entry)
    }

    pub fn insert(&mut self, entry: BlockEntry) {
        self.entries.insert(entry.entry.clone(), entry);
    }

    pub fn remove(&mut self, entry: &str) -> Option<BlockEntry> {
        self.entries.remove(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;

    fn entry(text: &str) -> BlockEntry {
        BlockEntry {
            entry: text.to_owned(),
            note: None,
            added_at: Timestamp(1),
            added_by: "ops".into(),
        }
    }

    #[test]
    fn validates_entries() {
        for ok in ["+23", "+2348", "+234801234567890"] {
            assert_eq!(validate_entry(ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in [
            "",
            "+",
            "+2",
            "2348",
            "+23a8",
            "+2348012345678901",
            " +2348",
            "+ 2348",
        ] {
            assert_eq!(validate_entry(bad), Err(InvalidEntry::Entry), "{bad:?}");
        }
        assert!(validate_note(Some(&"x".repeat(MAX_NOTE_CHARS))).is_ok());
        assert_eq!(
            validate_note(Some(&"x".repeat(MAX_NOTE_CHARS + 1))),
            Err(InvalidEntry::Note)
        );
    }

    #[test]
    fn blocks_prefixes_and_exact_numbers() {
        let list = Blocklist::new([entry("+2348"), entry("+4915112345678")]);
        assert!(list.blocks("+2348012345678"));
        assert!(!list.blocks("+2347012345678"));
        assert!(list.blocks("+4915112345678"));
        assert!(!list.blocks("+4915112345679"));
        assert!(!Blocklist::default().blocks("+2348012345678"));
    }

    #[test]
    fn edits_by_entry_text() {
        let mut list = Blocklist::default();
        list.insert(entry("+2348"));
        list.insert(entry("+2348"));
        assert_eq!(list.len(), 1);
        assert!(list.remove("+2348").is_some());
        assert!(list.is_empty());
        assert!(!list.blocks("+2348012345678"));
    }
}
