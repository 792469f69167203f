//! Open packets in a slot map: a packet's handle is its slot's index plus
//! the slot's version, so the correlator reaches a packet by indexing
//! instead of hashing (several times per event), and a handle left in an
//! index after its packet was emitted finds nothing, as a removed hash key
//! did. Handles are plain u64 (`KeyData::as_ffi`) so the correlator's
//! indexes keep their value types.

use slotmap::{DefaultKey, Key, KeyData, SlotMap};

pub(super) type Handle = u64;

fn key(h: Handle) -> DefaultKey {
    KeyData::from_ffi(h).into()
}

fn handle(k: DefaultKey) -> Handle {
    k.data().as_ffi()
}

pub(super) struct Slots<T>(SlotMap<DefaultKey, T>);

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Self(SlotMap::new())
    }
}

impl<T> Slots<T> {
    pub fn insert(&mut self, value: T) -> Handle {
        handle(self.0.insert(value))
    }

    pub fn get(&self, h: &Handle) -> Option<&T> {
        self.0.get(key(*h))
    }

    pub fn get_mut(&mut self, h: &Handle) -> Option<&mut T> {
        self.0.get_mut(key(*h))
    }

    pub fn contains_key(&self, h: &Handle) -> bool {
        self.0.contains_key(key(*h))
    }

    pub fn remove(&mut self, h: &Handle) -> Option<T> {
        self.0.remove(key(*h))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Handle, &T)> {
        self.0.iter().map(|(k, v)| (handle(k), v))
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.0.values_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_handle_finds_nothing_even_when_its_slot_is_reused() {
        let mut s = Slots::default();
        let a = s.insert("a");
        let b = s.insert("b");
        assert_eq!((s.get(&a), s.get(&b), s.len()), (Some(&"a"), Some(&"b"), 2));
        assert_eq!(s.remove(&a), Some("a"));
        assert_eq!(s.get(&a), None);
        assert_eq!((s.remove(&a), s.len()), (None, 1));
        let c = s.insert("c");
        assert_ne!(c, a, "the reused slot has a new version");
        assert_eq!((s.get(&a), s.get(&c)), (None, Some(&"c")));
        assert!(!s.contains_key(&a) && s.contains_key(&c));
        let mut all: Vec<_> = s.iter().map(|(h, v)| (h, *v)).collect();
        all.sort();
        let mut want = vec![(b, "b"), (c, "c")];
        want.sort();
        assert_eq!(all, want);
        *s.get_mut(&b).unwrap() = "B";
        assert_eq!(s.values_mut().filter(|v| **v == "B").count(), 1);
    }
}
