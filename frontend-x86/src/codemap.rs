//! Which physical pages hold decoded or translated code, so that a write to one of them
//! invalidates what was decoded from it before the next instruction runs (self-modifying
//! code). The CPU's store path checks [`CodePages::contains`]; the execution tiers mark pages
//! when they cache code from them and drain [`CodePages::take_written`] after each instruction.

use std::collections::HashSet;

/// Pages below 4 GiB are tracked in a bitmap (one bit per 4 KiB page, 128 KiB in all,
/// allocated on first use); the rare code above 4 GiB in a set.
#[derive(Clone, Debug, Default)]
pub struct CodePages {
    low: Vec<u64>,
    high: HashSet<u64>,
    written: Vec<u64>,
}

const LOW_PAGES: u64 = 1 << 20;

impl CodePages {
    /// Marks physical page `page` (a page number, address >> 12) as holding code.
    pub fn mark(&mut self, page: u64) {
        if page < LOW_PAGES {
            if self.low.is_empty() {
                self.low = vec![0; (LOW_PAGES / 64) as usize];
            }
            self.low[(page / 64) as usize] |= 1 << (page % 64);
        } else {
            self.high.insert(page);
        }
    }

    /// Whether `page` holds code.
    #[inline]
    pub fn contains(&self, page: u64) -> bool {
        if page < LOW_PAGES {
            self.low.get((page / 64) as usize).is_some_and(|w| w & (1 << (page % 64)) != 0)
        } else {
            !self.high.is_empty() && self.high.contains(&page)
        }
    }

    /// Records a write to `page`, which holds code: the page stops being a code page and is
    /// queued for the execution tiers to drop what they decoded from it.
    pub fn note_write(&mut self, page: u64) {
        if page < LOW_PAGES {
            if let Some(w) = self.low.get_mut((page / 64) as usize) {
                *w &= !(1 << (page % 64));
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
        self.low.iter_mut().for_each(|w| *w = 0);
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
