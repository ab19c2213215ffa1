//! Batch execution: one key lookup per batch, results in input order, and all
//! cores for large batches.

use rayon::prelude::*;

use crate::keyring::{Keyring, KeyringError};

use super::EngineError;

/// Batches at least this long are split across the rayon pool; smaller ones run
/// on the calling thread, where the hand-off would cost more than it saves.
pub const PARALLEL_BATCH_THRESHOLD: usize = 256;

/// Per-item outcomes of a batch, in input order.
pub type BatchResult<T> = Vec<Result<T, KeyringError>>;

/// Checks a batch's size against the limit.
pub(super) fn check_batch_len(len: usize, limit: usize) -> Result<(), EngineError> {
    if len == 0 {
        return Err(EngineError::BatchEmpty);
    }
    if len > limit {
        return Err(EngineError::BatchTooLarge { got: len, limit });
    }
    Ok(())
}

/// Vault's rule: `context` is set in every item or in none.
pub(super) fn check_context_consistent<'a>(
    contexts: impl Iterator<Item = Option<&'a [u8]>>,
) -> Result<(), EngineError> {
    let mut first = None;
    for context in contexts {
        let set = context.is_some_and(|c| !c.is_empty());
        match first {
            None => first = Some(set),
            Some(expected) if expected != set => return Err(EngineError::BatchContextMixed),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Applies `op` to every item against one keyring, preserving order.
pub(super) fn run<I, O>(
    keyring: &Keyring,
    items: &[I],
    op: impl Fn(&Keyring, &I) -> Result<O, KeyringError> + Sync,
) -> BatchResult<O>
where
    I: Sync,
    O: Send,
{
    if items.len() < PARALLEL_BATCH_THRESHOLD {
        items.iter().map(|item| op(keyring, item)).collect()
    } else {
        items
            .par_iter()
            .with_min_len(64)
            .map(|item| op(keyring, item))
            .collect()
    }
}
