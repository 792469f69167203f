//! Open packets in a slab: a packet's handle is its slot's index plus the
//! slot's generation, so the correlator reaches a packet by indexing
//! instead of hashing (several times per event), and a handle left in an
//! index after its packet was emitted finds nothing, as a removed hash key
//! did.

/// Slot index in the low 32 bits, generation in the high 32.
pub(super) type Handle = u64;

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

pub(super) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

fn split(h: Handle) -> (usize, u32) {
    ((h & 0xffff_ffff) as usize, (h >> 32) as u32)
}

impl<T> Slab<T> {
    pub fn insert(&mut self, value: T) -> Handle {
        self.len += 1;
        let i = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                });
                self.slots.len() - 1
            }
        };
        let s = &mut self.slots[i];
        s.value = Some(value);
        (s.generation as u64) << 32 | i as u64
    }

    pub fn get(&self, h: &Handle) -> Option<&T> {
        let (i, generation) = split(*h);
        self.slots
            .get(i)
            .filter(|s| s.generation == generation)
            .and_then(|s| s.value.as_ref())
    }

    pub fn get_mut(&mut self, h: &Handle) -> Option<&mut T> {
        let (i, generation) = split(*h);
        self.slots
            .get_mut(i)
            .filter(|s| s.generation == generation)
            .and_then(|s| s.value.as_mut())
    }

    pub fn contains_key(&self, h: &Handle) -> bool {
        self.get(h).is_some()
    }

    pub fn remove(&mut self, h: &Handle) -> Option<T> {
        let (i, generation) = split(*h);
        let s = self
            .slots
            .get_mut(i)
            .filter(|s| s.generation == generation)?;
        let v = s.value.take()?;
        // A new generation: handles to the old value no longer match.
        s.generation = s.generation.wrapping_add(1);
        self.free.push(i as u32);
        self.len -= 1;
        Some(v)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn iter(&self) -> impl Iterator<Item = (Handle, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.value
                .as_ref()
                .map(|v| ((s.generation as u64) << 32 | i as u64, v))
        })
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().filter_map(|s| s.value.as_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_handle_finds_nothing_even_when_its_slot_is_reused() {
        let mut s = Slab::default();
        let a = s.insert("a");
        let b = s.insert("b");
        assert_eq!((s.get(&a), s.get(&b), s.len()), (Some(&"a"), Some(&"b"), 2));
        assert_eq!(s.remove(&a), Some("a"));
        assert_eq!(s.get(&a), None);
        assert_eq!((s.remove(&a), s.len()), (None, 1));
        let c = s.insert("c");
        assert_ne!(c, a, "the reused slot has a new generation");
        assert_eq!((s.get(&a), s.get(&c)), (None, Some(&"c")));
        let mut all: Vec<_> = s.iter().map(|(h, v)| (h, *v)).collect();
        all.sort();
        let mut want = vec![(b, "b"), (c, "c")];
        want.sort();
        assert_eq!(all, want);
        *s.get_mut(&b).unwrap() = "B";
        assert_eq!(s.values_mut().filter(|v| **v == "B").count(), 1);
    }
}
