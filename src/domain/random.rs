//! Randomness from the operating system's CSPRNG, fetched a block at a time.
//!
//! Each OTP takes randomness three times (its code, its verification's id, the nonce that
//! seals it in its job). Asking the OS each time is a system call each; here one call
//! fills a block of 1 KiB for the thread, and its words are handed out once each, in order.
//! Every byte still comes from the OS CSPRNG, unchanged: nothing is derived or stretched.

use rand::rngs::OsRng;
use rand::{CryptoRng, Rng, RngCore};
use rand_core::block::{BlockRng, BlockRngCore};
use std::cell::RefCell;

/// Words of OS randomness fetched at once.
const BLOCK_WORDS: usize = 256;

/// A block of words as `BlockRng` wants it.
struct Block([u32; BLOCK_WORDS]);

impl Default for Block {
    fn default() -> Self {
        Block([0; BLOCK_WORDS])
    }
}

impl AsRef<[u32]> for Block {
    fn as_ref(&self) -> &[u32] {
        &self.0
    }
}

impl AsMut<[u32]> for Block {
    fn as_mut(&mut self) -> &mut [u32] {
        &mut self.0
    }
}

/// Fills a block from the OS.
struct OsBlocks;

impl BlockRngCore for OsBlocks {
    type Item = u32;
    type Results = Block;

    fn generate(&mut self, results: &mut Block) {
        OsRng.fill(&mut results.0[..]);
    }
}

thread_local! {
    static BLOCKS: RefCell<BlockRng<OsBlocks>> = RefCell::new(BlockRng::new(OsBlocks));
}

/// The OS CSPRNG through this thread's block: use it as `OsRng` is used.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

impl RngCore for OsRandom {
    fn next_u32(&mut self) -> u32 {
        BLOCKS.with(|blocks| blocks.borrow_mut().next_u32())
    }

    fn next_u64(&mut self) -> u64 {
        BLOCKS.with(|blocks| blocks.borrow_mut().next_u64())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        BLOCKS.with(|blocks| blocks.borrow_mut().fill_bytes(dest));
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// Every word is the OS CSPRNG's own.
impl CryptoRng for OsRandom {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn words_are_handed_out_once_across_blocks() {
        // Three blocks' worth: a repeat of a block (a refill that did not happen) would show
        // as the same words again.
        let words: Vec<u64> = (0..BLOCK_WORDS * 3 / 2)
            .map(|_| OsRandom.next_u64())
            .collect();
        let distinct: HashSet<u64> = words.iter().copied().collect();
        assert_eq!(distinct.len(), words.len());
    }

    #[test]
    fn every_bit_is_set_somewhere_and_clear_somewhere() {
        let mut ones = 0u64;
        let mut zeros = 0u64;
        for _ in 0..64 {
            let word = OsRandom.next_u64();
            ones |= word;
            zeros |= !word;
        }
        assert_eq!(ones, u64::MAX);
        assert_eq!(zeros, u64::MAX);
    }

    #[test]
    fn bytes_are_filled_to_their_ends_whatever_their_length() {
        for length in [8, 12, 1023, 1024, 1025, 5000] {
            let mut bytes = vec![0u8; length];
            OsRandom.fill_bytes(&mut bytes);
            // Eight random bytes are all zero once in 2^64.
            let (head, tail) = (&bytes[..8], &bytes[length - 8..]);
            assert!(
                head.iter().any(|&b| b != 0),
                "{length} bytes: the head left zero"
            );
            assert!(
                tail.iter().any(|&b| b != 0),
                "{length} bytes: the tail left zero"
            );
        }
    }
}
