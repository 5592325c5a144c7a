//! Which physical pages hold decoded or translated code, so that a write to one of them
//! invalidates what was decoded from it before the next instruction runs (self-modifying
//! code). The CPU's store path checks [`CodePages::contains`]; the execution tiers mark pages
//! when they cache code from them and drain [`CodePages::take_written`] after each instruction.

use std::collections::HashSet;

/// Pages below 4 GiB are tracked in a bitmap of one bit per 4 KiB page, in 512-byte chunks
/// (16 MiB of guest memory each) allocated when a page in them first holds code; the rare
/// code above 4 GiB in a set.
#[derive(Clone, Debug, Default)]
pub struct CodePages {
    chunks: Vec<Option<Box<[u64; CHUNK_WORDS]>>>,
    high: HashSet<u64>,
    written: Vec<u64>,
}

const LOW_PAGES: u64 = 1 << 20;
const CHUNK_WORDS: usize = 64;
const CHUNK_PAGES: u64 = (CHUNK_WORDS * 64) as u64;

#[inline]
fn split(page: u64) -> (usize, usize, u64) {
    let chunk = (page / CHUNK_PAGES) as usize;
    let within = page % CHUNK_PAGES;
    (chunk, (within / 64) as usize, 1u64 << (within % 64))
}

impl CodePages {
    /// Marks physical page `page` (a page number, address >> 12) as holding code.
    pub fn mark(&mut self, page: u64) {
        if page < LOW_PAGES {
            if self.chunks.is_empty() {
                self.chunks = vec![None; (LOW_PAGES / CHUNK_PAGES) as usize];
            }
            let (c, w, bit) = split(page);
            self.chunks[c].get_or_insert_with(|| Box::new([0; CHUNK_WORDS]))[w] |= bit;
        } else {
            self.high.insert(page);
        }
    }

    /// Whether `page` holds code.
    #[inline]
    pub fn contains(&self, page: u64) -> bool {
        if page < LOW_PAGES {
            let (c, w, bit) = split(page);
            matches!(self.chunks.get(c), Some(Some(words)) if words[w] & bit != 0)
        } else {
            !self.high.is_empty() && self.high.contains(&page)
        }
    }

    /// Records a write to `page`, which holds code: the page stops being a code page and is
    /// queued for the execution tiers to drop what they decoded from it.
    pub fn note_write(&mut self, page: u64) {
        if page < LOW_PAGES {
            let (c, w, bit) = split(page);
            if let Some(Some(words)) = self.chunks.get_mut(c) {
                words[w] &= !bit;
            }
        } else {
            self.high.remove(&page);
        }
        self.written.push(page);
    }

    /// Whether writes are waiting to be handled.
    #[inline]
    pub fn has_writes(&self) -> bool {
        !self.written.is_empty()
    }

    /// The pages written since the last call.
    pub fn take_written(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.written)
    }

    /// Forgets every mark (the caches were flushed).
    pub fn clear(&mut self) {
        self.chunks.iter_mut().for_each(|c| *c = None);
        self.high.clear();
        self.written.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_to_a_marked_page_is_reported_once_and_unmarks_it() {
        let mut c = CodePages::default();
        assert!(!c.contains(5));
        c.mark(5);
        c.mark(LOW_PAGES + 7);
        assert!(c.contains(5) && c.contains(LOW_PAGES + 7) && !c.contains(6));
        c.note_write(5);
        assert!(!c.contains(5));
        assert!(c.has_writes());
        assert_eq!(c.take_written(), vec![5]);
        assert!(!c.has_writes());
    }
}
