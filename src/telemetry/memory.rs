//! The allocator's own figures for `/metrics`: what otpd has allocated against what the
//! allocator keeps resident, so a growing resident set can be told apart from live data.
//! The binary installs a reader for the allocator it links; without one (tests, another
//! allocator) the gauges stay absent.

use std::sync::OnceLock;

/// Bytes, as the allocator counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorFigures {
    /// Bytes in live allocations.
    pub allocated: u64,
    /// Bytes in the pages that hold live allocations.
    pub active: u64,
    /// Bytes the allocator keeps in physical memory, its own metadata included.
    pub resident: u64,
}

/// Reads the figures now; `None` if the allocator cannot tell.
pub type AllocatorReader = fn() -> Option<AllocatorFigures>;

static READER: OnceLock<AllocatorReader> = OnceLock::new();

/// Makes `/metrics` report `reader`'s figures. The first reader installed stays.
pub fn install_allocator_reader(reader: AllocatorReader) {
    let _ = READER.set(reader);
}

pub(crate) fn read() -> Option<AllocatorFigures> {
    READER.get().and_then(|read| read())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_report_the_installed_allocator_and_the_process() {
        install_allocator_reader(|| {
            Some(AllocatorFigures {
                allocated: 1_000,
                active: 2_000,
                resident: 3_000,
            })
        });
        let page = crate::telemetry::metrics::metrics().render();
        for line in [
            "otpd_allocator_bytes{kind=\"allocated\"} 1000",
            "otpd_allocator_bytes{kind=\"active\"} 2000",
            "otpd_allocator_bytes{kind=\"resident\"} 3000",
        ] {
            assert!(page.contains(line), "no {line} in:\n{page}");
        }
        #[cfg(target_os = "linux")]
        assert!(page.contains("process_resident_memory_bytes "), "{page}");
    }
}
