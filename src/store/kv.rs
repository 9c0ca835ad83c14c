//! The key-value seam under the records: ordered byte keys, single-key writes and batches
//! of them, a compare-and-swap, bounded scans, and a group-committed flush. Nothing more:
//! the record layer orders its writes, a batch's too, so that no transaction is needed.

use futures_util::future::BoxFuture;
use std::ops::Bound;

use super::StoreError;

/// A key and its value, as a scan hands them out.
pub type Entry<V> = (V, V);

/// The lower and upper bound of a walk over an ordered map of byte keys.
pub type Bounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// An ordered map of byte keys to byte values that can be made durable.
///
/// Every write is visible to every reader at once, and durable once a later [`flush`]
/// resolves. Single-key operations are atomic; a batch (`write_all`) is one step on an
/// engine that can, and otherwise made in order, of which a crash may leave a prefix.
///
/// [`flush`]: KvEngine::flush
pub trait KvEngine: Send + Sync + 'static {
    /// A value as the engine hands it out, so an engine that shares its buffers need not copy.
    type Value: AsRef<[u8]>;

    fn get(&self, key: &[u8]) -> Result<Option<Self::Value>, StoreError>;

    /// Sets `key` to `value`, replacing what it held.
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Sets `key`, which holds nothing: a key made for this write alone, such as one named
    /// by a new id. An engine that keeps what each write replaced need not look for it.
    fn insert_new(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.insert(key, value)
    }

    /// Removes `key`; removing an absent key is no error.
    fn remove(&self, key: &[u8]) -> Result<(), StoreError>;

    /// Sets `key` to `value` (`None`: removes it).
    fn set(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        match value {
            Some(value) => self.insert(key, value),
            None => self.remove(key),
        }
    }

    /// Sets `key` to `value` (`None`: removes it) and hands back what it held; an engine
    /// that can finds the key once for both.
    fn replace(&self, key: &[u8], value: Option<&[u8]>) -> Result<Option<Self::Value>, StoreError> {
        let old = self.get(key)?;
        self.set(key, value)?;
        Ok(old)
    }

    /// Makes `puts`, in order; an engine that can does it in one step. (sled's own batches
    /// wait out the flush in progress, which its writes one by one do not: it takes them
    /// one by one.)
    fn write_all(&self, puts: &[Put<'_>]) -> Result<(), StoreError> {
        puts.iter().try_for_each(|put| match put.new_value() {
            Some(value) => self.insert_new(put.key, value),
            None => self.set(put.key, put.value),
        })
    }

    /// [`write_all`](KvEngine::write_all), handing back what each put's key held before it
    /// (`None` for a [new](Put::new) key, which is not looked for); an engine that can
    /// finds each key once for both.
    fn replace_all(&self, puts: &[Put<'_>]) -> Result<Vec<Option<Self::Value>>, StoreError> {
        puts.iter()
            .map(|put| match put.new_value() {
                Some(value) => self.insert_new(put.key, value).map(|()| None),
                None => self.replace(put.key, put.value),
            })
            .collect()
    }

    /// Sets `key` to `new` (`None`: removes it) if it holds `expected` (`None`: is absent),
    /// atomically. Returns whether it did.
    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError>;

    /// Up to `limit` entries of `range`, keys and values, in key order.
    fn scan(
        &self,
        range: KeyRange<'_>,
        limit: usize,
    ) -> Result<Vec<Entry<Self::Value>>, StoreError>;

    /// Resolves once every write made before the call is durable. Concurrent calls may
    /// share one fsync.
    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>>;

    /// [`flush`](KvEngine::flush), for writes nobody is waiting on to answer: an engine may
    /// hold it back a little, so that they are made durable along with the next writes that
    /// are.
    fn flush_unhurried(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.flush()
    }

    /// Whether the engine answers reads.
    fn check_health(&self) -> Result<(), StoreError>;

    /// How many times the engine was opened again after a failure: what it held but had
    /// not made durable then is gone.
    fn reopens(&self) -> u64 {
        0
    }
}

/// One write of several made together: `key` set to `value` (`None`: removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Put<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
    /// A key made for this write alone, which holds nothing (see
    /// [`KvEngine::insert_new`]): what it held is not looked for.
    pub new: bool,
}

impl<'a> Put<'a> {
    /// Sets `key` to `value` (`None`: removes it), whatever it held.
    pub fn set(key: &'a [u8], value: Option<&'a [u8]>) -> Self {
        Put {
            key,
            value,
            new: false,
        }
    }

    /// Sets `key` to `value`; `new`: a key that holds nothing.
    pub fn insert(key: &'a [u8], value: &'a [u8], new: bool) -> Self {
        Put {
            key,
            value: Some(value),
            new,
        }
    }

    /// The value a put to a [new](Put::new) key sets, written without asking what the key
    /// held; `None` for any other put.
    pub fn new_value(&self) -> Option<&'a [u8]> {
        self.value.filter(|_| self.new)
    }
}

/// The keys a scan visits: those that start with `prefix`, and are after `after` and before
/// `before` when those are given (both exclusive), in byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRange<'a> {
    prefix: &'a [u8],
    after: Option<&'a [u8]>,
    before: Option<&'a [u8]>,
}

impl<'a> KeyRange<'a> {
    /// Every key that starts with `prefix` (the empty prefix: every key).
    pub fn prefix(prefix: &'a [u8]) -> Self {
        KeyRange {
            prefix,
            after: None,
            before: None,
        }
    }

    /// Only the keys after `key`.
    pub fn after(self, key: &'a [u8]) -> Self {
        KeyRange {
            after: Some(key),
            ..self
        }
    }

    /// Only the keys before `key`.
    pub fn before(self, key: &'a [u8]) -> Self {
        KeyRange {
            before: Some(key),
            ..self
        }
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key.starts_with(self.prefix)
            && self.after.is_none_or(|after| key > after)
            && self.before.is_none_or(|before| key < before)
    }

    /// Up to `limit` entries in the range, from an engine's walk of its map between
    /// [`KeyRange::bounds`] (`walk` is not called when no key can be in range); the first
    /// error ends the walk.
    pub fn walk<V: AsRef<[u8]>, E, I>(
        &self,
        limit: usize,
        walk: impl FnOnce(Bounds<'a>) -> I,
    ) -> Result<Vec<Entry<V>>, E>
    where
        I: IntoIterator<Item = Result<Entry<V>, E>>,
    {
        let Some(bounds) = self.bounds() else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        for entry in walk(bounds) {
            if entries.len() == limit {
                break;
            }
            let (key, value) = entry?;
            if !self.contains(key.as_ref()) {
                break;
            }
            entries.push((key, value));
        }
        Ok(entries)
    }

    /// The bounds an ordered map is walked between while [`KeyRange::contains`] holds
    /// (keys sharing a prefix are contiguous, so the walk may stop at the first it refuses).
    /// `None` when no key can be in range: an engine never asks its map for a range that
    /// ends before it starts.
    pub fn bounds(&self) -> Option<Bounds<'a>> {
        let (lower, start) = match self.after {
            Some(after) if after >= self.prefix => (Bound::Excluded(after), after),
            _ => (Bound::Included(self.prefix), self.prefix),
        };
        let upper = match self.before {
            Some(before) if before <= start => return None,
            Some(before) => Bound::Excluded(before),
            None => Bound::Unbounded,
        };
        Some((lower, upper))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_start_at_the_prefix_or_after_the_given_key() {
        let range = KeyRange::prefix(b"o/");
        assert_eq!(
            range.bounds(),
            Some((Bound::Included(&b"o/"[..]), Bound::Unbounded))
        );
        assert_eq!(
            range.after(b"o/5").bounds(),
            Some((Bound::Excluded(&b"o/5"[..]), Bound::Unbounded))
        );
        // A key before the prefix does not widen the range.
        assert_eq!(
            range.after(b"a").bounds(),
            Some((Bound::Included(&b"o/"[..]), Bound::Unbounded))
        );
        assert_eq!(
            range.before(b"o/9").bounds(),
            Some((Bound::Included(&b"o/"[..]), Bound::Excluded(&b"o/9"[..])))
        );
    }

    #[test]
    fn a_range_that_ends_before_it_starts_is_empty() {
        let range = KeyRange::prefix(b"o/");
        assert_eq!(range.after(b"o/5").before(b"o/5").bounds(), None);
        assert_eq!(range.after(b"o/6").before(b"o/5").bounds(), None);
        assert_eq!(range.before(b"o/").bounds(), None);
        assert_eq!(range.before(b"a").bounds(), None);
    }

    #[test]
    fn contains_what_the_bounds_and_prefix_admit() {
        let range = KeyRange::prefix(b"o/").after(b"o/2").before(b"o/8");
        assert!(range.contains(b"o/3"));
        assert!(!range.contains(b"o/2"));
        assert!(!range.contains(b"o/8"));
        assert!(!range.contains(b"p/3"));
        assert!(KeyRange::prefix(b"").contains(b"anything"));
    }
}
