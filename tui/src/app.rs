//! The TUI's model: the packets kept, the statistics over all packets seen,
//! and the view state (selection, sort, filter, modes). Input comes in
//! through `push`/`set_status`/`on_key`; the widgets in `render` only read.
//! No terminal and no I/O here, so all of it runs in tests.

use std::cell::Cell;
use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use timeline::model::{Summary, Timeline};

use crate::stats::PairStats;
use crate::{Options, Status};

/// One kept packet and what rendering needs precomputed about it.
pub(crate) struct Entry {
    /// Arrival order, unique for the run: selection and marks follow it
    /// through sorting, filtering and eviction.
    pub seq: u64,
    pub tl: Timeline,
    /// Lower-cased summary, fingerprint, probes and devices: what `/` matches.
    haystack: String,
    /// The hop with the largest delta, when there are two hops or more.
    pub slowest: Option<usize>,
}

impl Entry {
    fn new(seq: u64, tl: Timeline) -> Entry {
        let mut haystack = String::with_capacity(tl.summary.len() + 16 * tl.hops.len());
        haystack.push_str(&tl.summary);
        haystack.push(' ');
        haystack.push_str(&tl.fingerprint);
        for h in &tl.hops {
            haystack.push(' ');
            haystack.push_str(&h.probe);
            if !h.dev.is_empty() {
                haystack.push(' ');
                haystack.push_str(&h.dev);
            }
            if let Some(r) = &h.drop_reason {
                haystack.push(' ');
                haystack.push_str(r);
            }
        }
        if tl.dropped {
            haystack.push_str(" dropped");
        }
        if !tl.complete {
            haystack.push_str(" incomplete");
        }
        if tl.lost_events {
            haystack.push_str(" lost");
        }
        let haystack = haystack.to_lowercase();
        let slowest = tl
            .hops
            .iter()
            .enumerate()
            .skip(1)
            .max_by_key(|(i, h)| (h.delta_ns, std::cmp::Reverse(*i)))
            .map(|(i, _)| i);
        Entry {
            seq,
            tl,
            haystack,
            slowest,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    /// Oldest first, so new packets arrive at the bottom.
    Time,
    /// Slowest (largest total latency) first.
    Latency,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing a filter after `/`.
    Filter,
    /// `e` pressed: choosing the export format.
    Export,
    Help,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    JsonLines,
    Pcapng,
}

/// What the event loop must do after a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    Export(ExportFormat),
}

/// Totals over every packet seen, kept or evicted.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub seen: u64,
    pub evicted: u64,
    pub dropped: u64,
    pub incomplete: u64,
    pub lost: u64,
}

pub struct App {
    max_packets: usize,
    pub(crate) packets: VecDeque<Entry>,
    /// Packets that arrived while paused; shown on resume.
    pending: VecDeque<Entry>,
    next_seq: u64,
    pub(crate) stats: PairStats,
    pub(crate) totals: Totals,
    /// Most hops of any packet seen: sizes the waterfall pane.
    pub(crate) max_hops: usize,
    /// Indices into `packets` of the filtered, sorted list on screen.
    pub(crate) view: Vec<usize>,
    /// Position in `view` of the selected packet.
    pub(crate) selected: usize,
    selected_seq: Option<u64>,
    /// Keep the newest packet selected as packets arrive.
    follow: bool,
    pub(crate) sort: SortBy,
    pub(crate) filter: String,
    pub(crate) mode: Mode,
    pub(crate) zoom: bool,
    pub(crate) paused: bool,
    /// A live source (else a replay, which cannot pause).
    pub(crate) live: bool,
    /// The source said End or hung up.
    pub(crate) ended: bool,
    pub(crate) status: Status,
    pub(crate) summary: Option<Summary>,
    /// The fixed part of the status line, rebuilt when `status` changes
    /// rather than on every frame.
    pub(crate) status_text: String,
    /// The last thing done (export, errors), shown in the status line.
    pub(crate) message: String,
    pub(crate) marked: HashSet<u64>,
    /// First list row on screen; render moves it to keep the selection
    /// visible (the list height is only known there).
    pub(crate) list_offset: Cell<usize>,
    /// First waterfall row on screen in zoom.
    pub(crate) hop_offset: usize,
    dirty: bool,
}

impl App {
    pub fn new(opts: &Options) -> App {
        let mut app = App {
            max_packets: opts.max_packets.max(1),
            packets: VecDeque::new(),
            pending: VecDeque::new(),
            next_seq: 0,
            stats: PairStats::default(),
            totals: Totals::default(),
            max_hops: 0,
            view: Vec::new(),
            selected: 0,
            selected_seq: None,
            follow: true,
            sort: SortBy::Time,
            filter: String::new(),
            mode: Mode::Normal,
            zoom: false,
            paused: false,
            live: true,
            ended: false,
            status: Status {
                source: opts.source.clone().unwrap_or_default(),
                ..Status::default()
            },
            summary: None,
            status_text: String::new(),
            message: String::new(),
            marked: HashSet::new(),
            list_offset: Cell::new(0),
            hop_offset: 0,
            dirty: true,
        };
        app.rebuild_status_text();
        app
    }

    /// A model for a saved trace: all packets at once, the first selected.
    /// The trace's summary, when there is one, supplies the probes and
    /// their lost-event counts for the status line.
    pub fn replay(timelines: Vec<Timeline>, summary: Option<Summary>, opts: &Options) -> App {
        let mut app = App::new(opts);
        app.live = false;
        app.ended = true;
        app.follow = false;
        if app.status.source.is_empty() {
            app.status.source = "replay".into();
        }
        if let Some(s) = &summary {
            app.status.probes = s
                .probes
                .iter()
                .map(|p| (p.probe.clone(), p.method.clone()))
                .collect();
            app.status.lost_per_probe = s
                .probes
                .iter()
                .filter(|p| p.lost > 0)
                .map(|p| (p.probe.clone(), p.lost))
                .collect();
        }
        app.summary = summary;
        for t in timelines {
            app.push(t);
        }
        app.rebuild_status_text();
        app.refresh();
        app
    }

    /// Takes one packet: counts it into the statistics at once, keeps it
    /// in the list (evicting the oldest beyond `max_packets`).
    pub fn push(&mut self, tl: Timeline) {
        self.stats.record(&tl);
        self.totals.seen += 1;
        self.max_hops = self.max_hops.max(tl.hops.len());
        self.totals.dropped += u64::from(tl.dropped);
        self.totals.incomplete += u64::from(!tl.complete);
        self.totals.lost += u64::from(tl.lost_events);
        let e = Entry::new(self.next_seq, tl);
        self.next_seq += 1;
        if self.paused {
            // The list on screen stays as it is; the newest max_packets
            // wait for resume.
            self.pending.push_back(e);
            if self.pending.len() > self.max_packets {
                self.pending.pop_front();
                self.totals.evicted += 1;
            }
            return;
        }
        self.packets.push_back(e);
        self.evict();
        self.dirty = true;
    }

    fn evict(&mut self) {
        while self.packets.len() > self.max_packets {
            let Some(old) = self.packets.pop_front() else {
                break;
            };
            self.marked.remove(&old.seq);
            self.totals.evicted += 1;
        }
    }

    pub fn set_status(&mut self, s: Status) {
        // A live source may not know how it is named; keep what Options said.
        let source = if s.source.is_empty() {
            std::mem::take(&mut self.status.source)
        } else {
            s.source.clone()
        };
        self.status = Status { source, ..s };
        self.rebuild_status_text();
    }

    pub fn end_of_source(&mut self) {
        if !self.ended {
            self.ended = true;
            self.rebuild_status_text();
        }
    }

    pub fn set_message(&mut self, m: impl Into<String>) {
        self.message = m.into();
    }

    /// Packets waiting while paused.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Number of packets in the (filtered) list.
    pub fn shown(&self) -> usize {
        self.view.len()
    }

    /// The selected packet, if the list is not empty.
    pub fn selected_timeline(&self) -> Option<&Timeline> {
        self.selected_entry().map(|e| &e.tl)
    }

    pub(crate) fn selected_entry(&self) -> Option<&Entry> {
        self.view
            .get(self.selected)
            .and_then(|&i| self.packets.get(i))
    }

    /// What `e` would export: the marked packets if any are marked (in list
    /// order), else the whole filtered list.
    pub fn export_set(&self) -> impl Iterator<Item = &Timeline> {
        let any_marked = self
            .view
            .iter()
            .filter_map(|&i| self.packets.get(i))
            .any(|e| self.marked.contains(&e.seq));
        self.view
            .iter()
            .filter_map(|&i| self.packets.get(i))
            .filter(move |e| !any_marked || self.marked.contains(&e.seq))
            .map(|e| &e.tl)
    }

    /// Recomputes the list and the statistics after changes. The event loop
    /// calls it once per batch of input, never per packet.
    pub fn refresh(&mut self) {
        self.stats.refresh();
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let needle = self.filter.to_lowercase();
        self.view.clear();
        self.view.extend(
            self.packets
                .iter()
                .enumerate()
                .filter(|(_, e)| needle.is_empty() || e.haystack.contains(&needle))
                .map(|(i, _)| i),
        );
        let packets = &self.packets;
        match self.sort {
            // Arrival order is nearly time order already: sort_by_key's
            // merge sort is close to linear on it.
            SortBy::Time => self
                .view
                .sort_by_key(|&i| (packets[i].tl.start_ns, packets[i].seq)),
            SortBy::Latency => self
                .view
                .sort_by_key(|&i| (std::cmp::Reverse(packets[i].tl.total_ns), packets[i].seq)),
        }
        self.reselect();
    }

    /// Puts the selection back on the packet it was on, or on the newest
    /// when following.
    fn reselect(&mut self) {
        let n = self.view.len();
        if n == 0 {
            self.selected = 0;
            return;
        }
        let follow_target = self.follow && self.sort == SortBy::Time;
        if follow_target {
            self.selected = n - 1;
        } else if let Some(seq) = self.selected_seq {
            match self
                .view
                .iter()
                .position(|&i| self.packets.get(i).is_some_and(|e| e.seq == seq))
            {
                Some(p) => self.selected = p,
                None => self.selected = self.selected.min(n - 1),
            }
        } else {
            self.selected = self.selected.min(n - 1);
        }
        self.remember_selection();
    }

    fn remember_selection(&mut self) {
        let seq = self.selected_entry().map(|e| e.seq);
        if seq != self.selected_seq {
            self.hop_offset = 0;
        }
        self.selected_seq = seq;
    }

    fn move_selection(&mut self, by: isize) {
        let n = self.view.len();
        if n == 0 {
            return;
        }
        let cur = self.selected as isize;
        let next = (cur + by).clamp(0, n as isize - 1) as usize;
        self.selected = next;
        // Following resumes only by going to the end explicitly (G/End) or
        // by moving onto the last row.
        self.follow = self.live && next == n - 1 && by > 0;
        self.remember_selection();
    }

    fn select_last(&mut self) {
        if !self.view.is_empty() {
            self.selected = self.view.len() - 1;
            self.follow = self.live;
            self.remember_selection();
        }
    }

    fn select_first(&mut self) {
        self.selected = 0;
        self.follow = false;
        self.remember_selection();
    }

    fn set_paused(&mut self, paused: bool) {
        if !self.live || self.paused == paused {
            return;
        }
        self.paused = paused;
        if !paused {
            self.packets.append(&mut self.pending);
            self.evict();
            self.dirty = true;
        }
        self.rebuild_status_text();
    }

    /// Handles one key press. Quitting and exporting are left to the
    /// caller (they end the loop or do I/O).
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        // Keys act on the list as shown; bring it up to date with any
        // packets pushed since the last refresh.
        self.refresh();
        if key.modifiers.contains(KeyModifiers::CONTROL)
            && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('d'))
        {
            return Action::Quit;
        }
        let action = match self.mode {
            Mode::Filter => {
                self.filter_key(key);
                Action::None
            }
            Mode::Export => {
                self.mode = Mode::Normal;
                match key.code {
                    KeyCode::Char('j') => Action::Export(ExportFormat::JsonLines),
                    KeyCode::Char('c') | KeyCode::Char('p') => Action::Export(ExportFormat::Pcapng),
                    _ => {
                        self.message = "export cancelled".into();
                        Action::None
                    }
                }
            }
            Mode::Help => {
                self.mode = Mode::Normal;
                if key.code == KeyCode::Char('q') {
                    Action::Quit
                } else {
                    Action::None
                }
            }
            Mode::Normal => self.normal_key(key),
        };
        self.refresh();
        action
    }

    fn filter_key(&mut self, key: KeyEvent) {
        match key.code {
            KeyCode::Enter => self.mode = Mode::Normal,
            KeyCode::Esc => {
                self.filter.clear();
                self.mode = Mode::Normal;
                self.dirty = true;
            }
            KeyCode::Backspace => {
                self.filter.pop();
                self.dirty = true;
            }
            KeyCode::Char(c) => {
                self.filter.push(c);
                self.dirty = true;
            }
            _ => {}
        }
    }

    fn normal_key(&mut self, key: KeyEvent) -> Action {
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Esc => {
                if self.zoom {
                    self.zoom = false;
                } else if !self.filter.is_empty() {
                    self.filter.clear();
                    self.dirty = true;
                }
            }
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::PageDown => self.move_selection(10),
            KeyCode::PageUp => self.move_selection(-10),
            KeyCode::Home | KeyCode::Char('g') => self.select_first(),
            KeyCode::End | KeyCode::Char('G') => self.select_last(),
            // In zoom the waterfall may be longer than the screen.
            KeyCode::Char('J') => {
                let hops = self.selected_entry().map_or(0, |e| e.tl.hops.len());
                self.hop_offset = (self.hop_offset + 1).min(hops.saturating_sub(1));
            }
            KeyCode::Char('K') => self.hop_offset = self.hop_offset.saturating_sub(1),
            KeyCode::Enter => self.zoom = !self.zoom,
            KeyCode::Char('p') if !self.live => {
                self.message = "a replay has nothing to pause".into();
            }
            KeyCode::Char('p') => self.set_paused(!self.paused),
            KeyCode::Char(' ') | KeyCode::Char('m') => {
                if let Some(seq) = self.selected_entry().map(|e| e.seq)
                    && !self.marked.remove(&seq)
                {
                    self.marked.insert(seq);
                }
            }
            KeyCode::Char('s') => {
                self.sort = match self.sort {
                    SortBy::Time => SortBy::Latency,
                    SortBy::Latency => SortBy::Time,
                };
                self.dirty = true;
            }
            KeyCode::Char('/') => self.mode = Mode::Filter,
            KeyCode::Char('e') => {
                if self.export_set().next().is_none() {
                    self.message = "nothing to export".into();
                } else {
                    self.mode = Mode::Export;
                }
            }
            KeyCode::Char('?') | KeyCode::F(1) => self.mode = Mode::Help,
            _ => {}
        }
        Action::None
    }

    fn rebuild_status_text(&mut self) {
        let s = &mut self.status_text;
        s.clear();
        let st = &self.status;
        if !st.source.is_empty() {
            let _ = write!(s, "{}", st.source);
        }
        if self.live {
            let _ = write!(s, " │ {:.0} ev/s", st.events_per_sec);
        } else if let Some(sum) = &self.summary {
            let _ = write!(s, " │ {} events, {} lost", sum.events, sum.lost_events);
        }
        if st.lost_per_probe.iter().any(|(_, n)| *n > 0) {
            s.push_str(" │ lost:");
            for (p, n) in st.lost_per_probe.iter().filter(|(_, n)| *n > 0) {
                let _ = write!(s, " {p}={n}");
            }
        } else if self.summary.is_none() {
            // A replay's summary already said "0 lost".
            s.push_str(" │ lost: 0");
        }
        if !st.probes.is_empty() {
            let _ = write!(s, " │ {} probes:", st.probes.len());
            for (p, m) in &st.probes {
                let _ = write!(s, " {p}({m})");
            }
        }
    }
}
