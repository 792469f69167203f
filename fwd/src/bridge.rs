//! MAC learning for more than two ports.
//!
//! One table for all worker threads: fanout spreads flows over queues, and a
//! station learned by one queue must be known to all. Lookups take a read
//! lock; the write lock is only taken when a station is new, moved, or its
//! timestamp is more than a second old. The table has a size cap so memory
//! stays flat whatever the traffic (unknown stations are flooded, as a
//! bridge does when its table is full).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::frame::{Mac, is_group};

#[derive(Clone, Copy, Debug)]
struct Entry {
    port: u16,
    seen: u32,
}

pub struct MacTable {
    map: RwLock<HashMap<Mac, Entry>>,
    /// Seconds since start, advanced by the control thread: a per-frame
    /// clock read would cost more than the lookup.
    now: AtomicU32,
    max_age: u32,
    cap: usize,
}

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// Every port but the ingress one.
    Flood,
    Port(u16),
    /// The destination sits on the ingress port: nothing to do.
    Filter,
}

impl MacTable {
    pub fn new(max_age: u32, cap: usize) -> MacTable {
        MacTable {
            map: RwLock::new(HashMap::new()),
            now: AtomicU32::new(0),
            max_age,
            cap,
        }
    }

    pub fn tick(&self, now_secs: u32) {
        self.now.store(now_secs, Ordering::Relaxed);
    }

    /// Learns `src` on `port` and returns where `dst` goes.
    pub fn learn_and_lookup(&self, port: u16, src: &Mac, dst: &Mac) -> Dest {
        let now = self.now.load(Ordering::Relaxed);
        if !is_group(src) {
            self.learn(port, src, now);
        }
        if is_group(dst) {
            return Dest::Flood;
        }
        let map = match self.map.read() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        match map.get(dst) {
            Some(e) if now.saturating_sub(e.seen) <= self.max_age => {
                if e.port == port {
                    Dest::Filter
                } else {
                    Dest::Port(e.port)
                }
            }
            _ => Dest::Flood,
        }
    }

    fn learn(&self, port: u16, src: &Mac, now: u32) {
        {
            let map = match self.map.read() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            if let Some(e) = map.get(src)
                && e.port == port
                && e.seen >= now.saturating_sub(1)
            {
                return;
            }
            if map.len() >= self.cap && !map.contains_key(src) {
                return;
            }
        }
        let mut map = match self.map.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.insert(*src, Entry { port, seen: now });
    }

    /// Forgets stations not seen for `max_age` seconds.
    pub fn age(&self) {
        let now = self.now.load(Ordering::Relaxed);
        let mut map = match self.map.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.retain(|_, e| now.saturating_sub(e.seen) <= self.max_age);
    }

    pub fn len(&self) -> usize {
        match self.map.read() {
            Ok(m) => m.len(),
            Err(p) => p.into_inner().len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = [2, 0, 0, 0, 0, 1];
    const B: Mac = [2, 0, 0, 0, 0, 2];
    const BCAST: Mac = [0xff; 6];

    #[test]
    fn learns_and_forwards() {
        let t = MacTable::new(300, 1024);
        assert_eq!(t.learn_and_lookup(0, &A, &BCAST), Dest::Flood);
        assert_eq!(t.learn_and_lookup(1, &B, &A), Dest::Port(0));
        assert_eq!(t.learn_and_lookup(0, &A, &B), Dest::Port(1));
        // A third station behind port 1 talking to B: same segment.
        assert_eq!(t.learn_and_lookup(1, &[2, 0, 0, 0, 0, 3], &B), Dest::Filter);
        // A moves to port 2.
        t.tick(5);
        assert_eq!(t.learn_and_lookup(2, &A, &BCAST), Dest::Flood);
        assert_eq!(t.learn_and_lookup(1, &B, &A), Dest::Port(2));
    }

    #[test]
    fn ages_and_caps() {
        let t = MacTable::new(10, 2);
        t.learn_and_lookup(0, &A, &BCAST);
        t.learn_and_lookup(1, &B, &BCAST);
        t.learn_and_lookup(1, &[2, 0, 0, 0, 0, 9], &BCAST);
        assert_eq!(t.len(), 2, "capped");
        t.tick(11);
        assert_eq!(t.learn_and_lookup(1, &B, &A), Dest::Flood, "A expired");
        t.age();
        assert_eq!(t.len(), 1, "only B (just refreshed) is left");
        // Group source addresses are never learned.
        t.learn_and_lookup(0, &BCAST, &A);
        assert_eq!(t.len(), 1);
    }
}
