//! Drawing the model: `impl Widget for &App`. Reads the model only, does no
//! I/O, and writes straight into the buffer with stack-formatted text, so a
//! frame allocates next to nothing however many packets are kept.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Clear, Widget};
use timeline::model::Hop;

use crate::app::{App, Entry, Mode, SortBy};
use crate::sfmt;
use crate::text::{Ns, time_of_day, width};

const HEADER: Style = Style::new().add_modifier(Modifier::BOLD);
const DIM: Style = Style::new().fg(Color::DarkGray);
const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);
const SLOWEST: Style = Style::new()
    .fg(Color::LightRed)
    .add_modifier(Modifier::BOLD);
const BAR: Style = Style::new().fg(Color::Cyan);
const DROPPED: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
const WARN: Style = Style::new().fg(Color::Yellow);

/// The key list, shared by the help overlay and the README.
pub const KEYS: &[(&str, &str)] = &[
    (
        "↑ ↓  j k",
        "move the selection (PgUp PgDn, g/Home first, G/End last and follow)",
    ),
    (
        "Enter",
        "zoom into the selected packet's waterfall (again or Esc: back)",
    ),
    ("J K", "scroll the waterfall when zoomed"),
    (
        "p",
        "pause / resume the live list (statistics keep counting)",
    ),
    ("s", "sort by time / by total latency"),
    (
        "/",
        "filter by text (summary, probe, device, dropped, lost...)",
    ),
    ("space", "mark / unmark the packet for export"),
    (
        "e",
        "export marked packets, else the listed ones (j JSON Lines, c pcapng)",
    ),
    ("?", "this help"),
    ("q  Ctrl-C", "quit"),
];

/// Writes `s` at (x, y), at most `w` columns; returns the column after it.
fn put(buf: &mut Buffer, x: u16, y: u16, s: &str, w: u16, style: Style) -> u16 {
    if w == 0 {
        return x;
    }
    buf.set_stringn(x, y, s, w as usize, style).0
}

/// Writes `s` right-aligned in the `w` columns starting at x.
fn put_right(buf: &mut Buffer, x: u16, y: u16, s: &str, w: u16, style: Style) {
    let sw = width(s) as u16;
    let pad = w.saturating_sub(sw);
    put(buf, x + pad, y, s, w - pad, style);
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width == 0 || area.height == 0 {
            return;
        }
        // Two bottom lines (status, keys/prompt) when there is room for them.
        let bottom = if area.height >= 12 { 2 } else { 1 };
        let main = Rect {
            height: area.height - bottom,
            ..area
        };
        let status = Rect {
            y: area.y + main.height,
            height: bottom,
            ..area
        };
        self.render_status(status, buf);
        if main.height == 0 {
            return;
        }
        if self.zoom {
            self.render_waterfall(main, buf, true);
        } else if main.height < 8 {
            // Too short for three panes: the list matters most.
            self.render_list(main, buf);
        } else {
            // The waterfall and the pair table get the rows they need (sized
            // by the longest packet seen, so the layout does not jump as the
            // selection moves), the list gets at least 2/5 and the rest.
            let mut list_h = (main.height * 2 / 5).max(4);
            let rem = main.height - list_h;
            let wf_need = (self.max_hops as u16).saturating_add(3).max(4);
            let pairs_need = (self.stats.rows().len().max(1) as u16).saturating_add(3);
            let (wf_h, pairs_h) = if main.height < 18 {
                // Short screens skip the pair table rather than squeeze the list.
                let wf = wf_need.min(rem);
                list_h += rem - wf;
                (wf, 0)
            } else if wf_need + pairs_need <= rem {
                list_h += rem - wf_need - pairs_need;
                (wf_need, pairs_need)
            } else {
                let wf = wf_need.min((rem * 3 / 5).max(4)).min(rem);
                let pairs = (rem - wf).min(pairs_need);
                if pairs < 4 {
                    (rem, 0)
                } else {
                    (rem - pairs, pairs)
                }
            };
            let list = Rect {
                height: list_h,
                ..main
            };
            let wf = Rect {
                y: main.y + list_h,
                height: wf_h,
                ..main
            };
            let pairs = Rect {
                y: wf.y + wf_h,
                height: pairs_h,
                ..main
            };
            self.render_list(list, buf);
            self.render_waterfall(wf, buf, false);
            if pairs_h > 0 {
                self.render_pairs(pairs, buf);
            }
        }
        if self.mode == Mode::Help {
            render_help(area, buf);
        }
    }
}

impl App {
    fn render_list(&self, area: Rect, buf: &mut Buffer) {
        Block::bordered().render(area, buf);
        let t = &self.totals;
        let title = sfmt!(256; " Packets {}/{} │ seen {} │ dropped {} incomplete {} lost-event {} │ sort: {} ",
            self.view.len(),
            self.packets.len(),
            t.seen,
            t.dropped,
            t.incomplete,
            t.lost,
            match self.sort { SortBy::Time => "time", SortBy::Latency => "latency" },
        );
        let x = put(
            buf,
            area.x + 1,
            area.y,
            title.as_str(),
            area.width.saturating_sub(2),
            HEADER,
        );
        if !self.filter.is_empty() || self.mode == Mode::Filter {
            let f = sfmt!(128; "filter: \"{}\" ", self.filter);
            put(
                buf,
                x,
                area.y,
                f.as_str(),
                (area.x + area.width).saturating_sub(x + 1),
                WARN,
            );
        }
        let inner = area.inner(ratatui::layout::Margin::new(1, 1));
        if inner.height == 0 || inner.width == 0 {
            return;
        }
        // Columns: selection, mark, time (dropped when narrow), total, hops,
        // flags, summary taking the rest.
        let show_time = inner.width >= 60;
        let header = if show_time {
            "   time              total  hops flag summary"
        } else {
            "     total  hops flag summary"
        };
        put(buf, inner.x, inner.y, header, inner.width, HEADER);
        let rows = inner.height.saturating_sub(1) as usize;
        if self.view.is_empty() {
            let msg = if !self.filter.is_empty() {
                sfmt!(128; "no packet matches \"{}\" (Esc clears the filter)", self.filter)
            } else if self.paused {
                sfmt!(128; "paused: {} packets waiting (p resumes)", self.pending_len())
            } else if self.live && !self.ended {
                sfmt!(128; "waiting for packets ({})", self.status.source)
            } else {
                sfmt!(128; "no packets in this trace")
            };
            if rows > 0 {
                put(
                    buf,
                    inner.x + 1,
                    inner.y + 1,
                    msg.as_str(),
                    inner.width - 1,
                    DIM,
                );
            }
            return;
        }
        let offset = keep_visible(self.list_offset.get(), self.selected, rows, self.view.len());
        self.list_offset.set(offset);
        for (row, &idx) in self.view.iter().enumerate().skip(offset).take(rows) {
            let Some(e) = self.packets.get(idx) else {
                continue;
            };
            let y = inner.y + 1 + (row - offset) as u16;
            let selected = row == self.selected;
            self.render_list_row(e, inner.x, y, inner.width, show_time, selected, buf);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn render_list_row(
        &self,
        e: &Entry,
        x0: u16,
        y: u16,
        w: u16,
        show_time: bool,
        selected: bool,
        buf: &mut Buffer,
    ) {
        let end = x0 + w;
        let mut x = x0;
        let base = if selected { SELECTED } else { Style::new() };
        if selected {
            buf.set_style(Rect::new(x0, y, w, 1), SELECTED);
        }
        x = put(buf, x, y, if selected { ">" } else { " " }, end - x, base);
        let mark = if self.marked.contains(&e.seq) {
            "+"
        } else {
            " "
        };
        x = put(buf, x, y, mark, end - x, base);
        x = put(buf, x, y, " ", end - x, base);
        let tl = &e.tl;
        if show_time {
            let t = match time_of_day(&tl.wall_start) {
                Some(t) => sfmt!(24; "{t:<15}"),
                None => sfmt!(24; "{:<15}", tl.start_ns),
            };
            x = put(buf, x, y, t.as_str(), end - x, base);
        }
        let total = sfmt!(16; "{:>8}", Ns(tl.total_ns));
        x = put(buf, x, y, total.as_str(), end - x, base);
        let hops = sfmt!(8; " {:>5} ", tl.hops.len());
        x = put(buf, x, y, hops.as_str(), end - x, base);
        for (on, c, st) in [
            (tl.dropped, "D", DROPPED),
            (!tl.complete, "I", WARN),
            (tl.lost_events, "L", Style::new().fg(Color::Magenta)),
        ] {
            let style = if on { base.patch(st) } else { base };
            x = put(buf, x, y, if on { c } else { " " }, end - x, style);
        }
        x = put(buf, x, y, "  ", end - x, base);
        put(buf, x, y, &tl.summary, end - x, base);
    }

    fn render_waterfall(&self, area: Rect, buf: &mut Buffer, zoom: bool) {
        Block::bordered().render(area, buf);
        let inner = area.inner(ratatui::layout::Margin::new(1, 1));
        let Some(e) = self.selected_entry() else {
            put(
                buf,
                area.x + 1,
                area.y,
                " Waterfall ",
                area.width.saturating_sub(2),
                HEADER,
            );
            if inner.height > 0 {
                put(
                    buf,
                    inner.x + 1,
                    inner.y,
                    "no packet selected",
                    inner.width.saturating_sub(1),
                    DIM,
                );
            }
            return;
        };
        let tl = &e.tl;
        // Flags first: on a narrow screen the summary (also in the list)
        // is what gets cut.
        let title_end = (area.x + area.width).saturating_sub(1);
        let head = sfmt!(32; " Waterfall #{} ", tl.id);
        let mut x = put(
            buf,
            area.x + 1,
            area.y,
            head.as_str(),
            area.width.saturating_sub(2),
            HEADER,
        );
        if tl.dropped {
            let reason = tl
                .hops
                .iter()
                .rev()
                .find_map(|h| h.drop_reason.as_deref())
                .unwrap_or("");
            let d = sfmt!(96; "DROPPED {} ", reason);
            x = put(
                buf,
                x,
                area.y,
                d.as_str(),
                title_end.saturating_sub(x),
                DROPPED,
            );
        }
        if !tl.complete {
            x = put(
                buf,
                x,
                area.y,
                "INCOMPLETE ",
                title_end.saturating_sub(x),
                WARN,
            );
        }
        if tl.lost_events {
            x = put(
                buf,
                x,
                area.y,
                "EVENTS LOST ",
                title_end.saturating_sub(x),
                WARN,
            );
        }
        let rest =
            sfmt!(256; "│ total {} │ {} hops │ {} ", Ns(tl.total_ns), tl.hops.len(), tl.summary);
        put(
            buf,
            x,
            area.y,
            rest.as_str(),
            title_end.saturating_sub(x),
            HEADER,
        );
        if inner.height == 0 || inner.width < 4 {
            return;
        }
        let mut y = inner.y;
        let bottom = inner.y + inner.height;
        if zoom {
            let wall = if tl.wall_start.is_empty() {
                "-"
            } else {
                tl.wall_start.as_str()
            };
            let info = sfmt!(256; "fingerprint {} │ first hop {} ({} ns) │ {}", tl.fingerprint, wall, tl.start_ns,
            if tl.complete {
                "complete"
            } else if tl.ended_unseen {
                "incomplete: freed where no probe fires (its skb came back with a new packet)"
            } else {
                "incomplete: no end of life seen"
            });
            put(buf, inner.x, y, info.as_str(), inner.width, DIM);
            y += 1;
            if y >= bottom {
                return;
            }
        }
        // Label columns sized to the longest value, then cut back so the bars
        // keep a third of the width (a fifth in zoom). Below 60 columns
        // only probe and delta stay: the probe name matters most.
        let max_probe = tl
            .hops
            .iter()
            .map(|h| width(&h.probe))
            .max()
            .unwrap_or(5)
            .max(5);
        let max_dev = tl
            .hops
            .iter()
            .map(|h| width(&h.dev).max(1) + 1 + digits(h.netns as u64))
            .max()
            .unwrap_or(9)
            .max(9);
        let w = inner.width as usize;
        let compact = w < 60;
        // method, comm/pid, len
        let extra = if zoom && !compact { 11 + 15 + 6 } else { 0 };
        // marker, gaps, cpu, delta, gap
        let fixed = if compact {
            2 + 1 + 9 + 1
        } else {
            2 + 1 + 1 + 6 + 9 + 1
        } + extra;
        let bar_share = if compact || zoom { w / 5 } else { w / 3 };
        let budget = w.saturating_sub(fixed + bar_share);
        let mut probe_w = max_probe.min(32);
        let mut dev_w = if compact { 0 } else { max_dev.min(24) };
        if probe_w + dev_w > budget {
            if compact {
                probe_w = budget.max(5);
            } else {
                // The probe name says more than the netns number: it keeps 3/5.
                dev_w = dev_w.min((budget * 2 / 5).max(9)).min(budget);
                probe_w = budget.saturating_sub(dev_w).max(5);
            }
        }
        let label_w = fixed + probe_w + dev_w;
        let bar_x = inner.x + label_w.min(w) as u16;
        let bar_w = (inner.x + inner.width).saturating_sub(bar_x);

        // Header.
        let hx = put(buf, inner.x, y, "  ", inner.width, HEADER);
        let hdr = if compact {
            sfmt!(128; "{:<pw$} {:>9} ", Trunc("probe", probe_w), "delta", pw = probe_w)
        } else {
            sfmt!(128; "{:<pw$} {:<dw$} {:>5} {:>9} ", Trunc("probe", probe_w), Trunc("dev@netns", dev_w), "cpu", "delta", pw = probe_w, dw = dev_w)
        };
        let hx = put(
            buf,
            hx,
            y,
            hdr.as_str(),
            inner.width.saturating_sub(2),
            HEADER,
        );
        if extra > 0 {
            let z = sfmt!(64; "{:<10} {:<14} {:>5} ", "method", "comm/pid", "len");
            put(
                buf,
                hx,
                y,
                z.as_str(),
                (inner.x + inner.width).saturating_sub(hx),
                HEADER,
            );
        }
        if bar_w >= 8 {
            put(buf, bar_x, y, "0", bar_w, DIM);
            let end = sfmt!(16; "{}", Ns(axis_span(tl.hops.as_slice())));
            put_right(buf, bar_x, y, end.as_str(), bar_w, DIM);
        }
        y += 1;

        let t0 = tl.hops.first().map(|h| h.ts_ns).unwrap_or(0);
        let span = axis_span(&tl.hops);
        let skip = if zoom {
            self.hop_offset.min(tl.hops.len().saturating_sub(1))
        } else {
            0
        };
        let visible = (bottom - y) as usize;
        // Outside zoom, a packet with more hops than rows keeps its slowest
        // hop on screen.
        let skip = match e.slowest {
            Some(s) if !zoom && s >= visible => s + 1 - visible,
            _ => skip,
        };
        for (i, h) in tl.hops.iter().enumerate().skip(skip) {
            if y >= bottom {
                break;
            }
            let slow = e.slowest == Some(i);
            let style = if slow {
                SLOWEST
            } else if h.drop_reason.is_some() {
                DROPPED
            } else {
                Style::new()
            };
            let end = inner.x + inner.width;
            let mut x = put(
                buf,
                inner.x,
                y,
                if slow { "* " } else { "  " },
                end - inner.x,
                style,
            );
            let dev = if h.dev.is_empty() {
                "-"
            } else {
                h.dev.as_str()
            };
            let dn = sfmt!(64; "{dev}@{}", h.netns);
            let delta = if i == 0 {
                sfmt!(16; "{:>9}", "start")
            } else {
                sfmt!(16; "{:>9}", sfmt!(16; "+{}", Ns(h.delta_ns)).as_str())
            };
            let row = if compact {
                sfmt!(160; "{:<pw$} {} ", Trunc(&h.probe, probe_w), delta.as_str(), pw = probe_w)
            } else {
                sfmt!(160; "{:<pw$} {:<dw$} {:>5} {} ",
                    Trunc(&h.probe, probe_w), Trunc(dn.as_str(), dev_w), sfmt!(8; "cpu{}", h.cpu).as_str(), delta.as_str(),
                    pw = probe_w, dw = dev_w)
            };
            x = put(buf, x, y, row.as_str(), end - x, style);
            if extra > 0 {
                let comm = sfmt!(32; "{}/{}", h.comm, h.pid);
                let z = sfmt!(64; "{:<10} {:<14} {:>5} ", Trunc(&h.method, 10), Trunc(comm.as_str(), 14), h.len);
                put(buf, x, y, z.as_str(), end.saturating_sub(x), style);
            }
            if bar_w >= 4 {
                draw_bar(
                    buf,
                    bar_x,
                    y,
                    bar_w,
                    h,
                    t0,
                    span,
                    if slow {
                        SLOWEST
                    } else if h.drop_reason.is_some() {
                        DROPPED
                    } else {
                        BAR
                    },
                );
            }
            y += 1;
            if let Some(r) = &h.drop_reason
                && zoom
                && y < bottom
            {
                let d = sfmt!(96; "    ✗ dropped here: {r}");
                put(buf, inner.x, y, d.as_str(), inner.width, DROPPED);
                y += 1;
            }
        }
    }

    fn render_pairs(&self, area: Rect, buf: &mut Buffer) {
        Block::bordered().render(area, buf);
        let t = &self.totals;
        let title = if t.evicted > 0 {
            sfmt!(160; " Hop-pair latency over all {} packets ({} no longer listed) ", t.seen, t.evicted)
        } else {
            sfmt!(160; " Hop-pair latency over all {} packets ", t.seen)
        };
        put(
            buf,
            area.x + 1,
            area.y,
            title.as_str(),
            area.width.saturating_sub(2),
            HEADER,
        );
        let inner = area.inner(ratatui::layout::Margin::new(1, 1));
        if inner.height == 0 || inner.width == 0 {
            return;
        }
        let rows = self.stats.rows();
        let w = inner.width as usize;
        let name_w = w.saturating_sub(8 + 4 * 9).max(10);
        let hdr = sfmt!(160; "{:<nw$}{:>8}{:>9}{:>9}{:>9}{:>9}", "from → to", "count", "p50", "p90", "p99", "max", nw = name_w);
        put(buf, inner.x, inner.y, hdr.as_str(), inner.width, HEADER);
        if rows.is_empty() {
            if inner.height > 1 {
                put(
                    buf,
                    inner.x,
                    inner.y + 1,
                    "no hop pairs yet: they need packets with two hops or more",
                    inner.width,
                    DIM,
                );
            }
            return;
        }
        for (i, r) in rows.iter().take(inner.height as usize - 1).enumerate() {
            let y = inner.y + 1 + i as u16;
            let name = sfmt!(128; "{} → {}", r.from, r.to);
            let line = sfmt!(256; "{:<nw$}{:>8}{:>9}{:>9}{:>9}{:>9}", Trunc(name.as_str(), name_w), r.count,
                Ns(r.p50_ns), Ns(r.p90_ns), Ns(r.p99_ns), Ns(r.max_ns), nw = name_w);
            put(buf, inner.x, y, line.as_str(), inner.width, Style::new());
        }
    }

    fn render_status(&self, area: Rect, buf: &mut Buffer) {
        let end = area.x + area.width;
        let y = area.y;
        let (tag, style) = if self.paused {
            (
                sfmt!(32; " PAUSED +{} ", self.pending_len()),
                Style::new().fg(Color::Black).bg(Color::Yellow),
            )
        } else if self.live && !self.ended {
            (
                sfmt!(32; " LIVE "),
                Style::new().fg(Color::Black).bg(Color::Green),
            )
        } else if self.live {
            (
                sfmt!(32; " ENDED "),
                Style::new().fg(Color::Black).bg(Color::Gray),
            )
        } else {
            (
                sfmt!(32; " REPLAY "),
                Style::new().fg(Color::Black).bg(Color::Cyan),
            )
        };
        let mut x = put(buf, area.x, y, tag.as_str(), area.width, style);
        x = put(buf, x, y, " ", end - x, Style::new());
        x = put(buf, x, y, &self.status_text, end - x, Style::new());
        let msg_line = if area.height >= 2 { y + 1 } else { y };
        if area.height < 2 && !self.message.is_empty() && self.mode == Mode::Normal {
            x = put(buf, x, y, " │ ", end - x, Style::new());
            put(buf, x, y, &self.message, end - x, WARN);
            return;
        }
        let _ = x;
        match self.mode {
            Mode::Filter => {
                let f = sfmt!(160; "filter: {}█  (Enter keeps it, Esc clears it)", self.filter);
                let x0 = if area.height >= 2 { area.x } else { x };
                put(buf, x0, msg_line, f.as_str(), end - x0, WARN);
            }
            Mode::Export => {
                let n = self.export_set().count();
                let marked = self
                    .view
                    .iter()
                    .filter_map(|&i| self.packets.get(i))
                    .any(|e| self.marked.contains(&e.seq));
                let f = sfmt!(160; "export {} {} packets as: j JSON Lines │ c pcapng │ other key cancels", n, if marked { "marked" } else { "listed" });
                put(buf, area.x, msg_line, f.as_str(), area.width, WARN);
            }
            _ if area.height >= 2 => {
                let x = if self.message.is_empty() {
                    area.x
                } else {
                    let x = put(buf, area.x, msg_line, &self.message, area.width, WARN);
                    put(buf, x, msg_line, " │ ", end - x, DIM)
                };
                put(
                    buf,
                    x,
                    msg_line,
                    if self.zoom {
                        "↑↓/jk next packet  J K scroll hops  Enter/Esc back  e export  ? help  q quit"
                    } else {
                        "↑↓/jk move  Enter zoom  p pause  s sort  / filter  space mark  e export  ? help  q quit"
                    },
                    end - x,
                    DIM,
                );
            }
            _ => {}
        }
    }
}

fn render_help(area: Rect, buf: &mut Buffer) {
    let w = area.width.min(92);
    let h = (KEYS.len() as u16 + 4).min(area.height);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    Clear.render(r, buf);
    Block::bordered()
        .title(" Keys (any key closes) ")
        .render(r, buf);
    let inner = r.inner(ratatui::layout::Margin::new(2, 1));
    for (i, (k, what)) in KEYS.iter().enumerate() {
        let y = inner.y + i as u16;
        if y >= inner.y + inner.height {
            break;
        }
        let x = put(buf, inner.x, y, k, inner.width.min(12), HEADER);
        let x = inner.x + 12.min(inner.width).max(x - inner.x);
        put(
            buf,
            x,
            y,
            what,
            (inner.x + inner.width).saturating_sub(x),
            Style::new(),
        );
    }
    let y = inner.y + KEYS.len() as u16 + 1;
    if y < inner.y + inner.height {
        put(
            buf,
            inner.x,
            y,
            "flags: D dropped, I incomplete, L events lost; * slowest hop",
            inner.width,
            DIM,
        );
    }
}

/// The packet's time axis: first hop to last hop, at least 1 ns.
fn axis_span(hops: &[Hop]) -> u64 {
    match (hops.first(), hops.last()) {
        (Some(a), Some(b)) => b.ts_ns.saturating_sub(a.ts_ns).max(1),
        _ => 1,
    }
}

/// The columns [start, end) of a hop's bar: from the previous hop (its
/// offset minus its delta) to the hop itself, at least one column wide.
fn bar_cols(h: &Hop, t0: u64, span: u64, w: u16) -> (u16, u16) {
    let end_off = h.ts_ns.saturating_sub(t0).min(span) as u128;
    let start_off = h
        .ts_ns
        .saturating_sub(h.delta_ns)
        .saturating_sub(t0)
        .min(span) as u128;
    let w128 = w as u128;
    let s = (start_off * w128 / span as u128) as u16;
    let e = (end_off * w128).div_ceil(span as u128) as u16;
    let s = s.min(w.saturating_sub(1));
    let e = e.clamp(s + 1, w);
    (s, e)
}

#[allow(clippy::too_many_arguments)]
fn draw_bar(buf: &mut Buffer, x: u16, y: u16, w: u16, h: &Hop, t0: u64, span: u64, style: Style) {
    let (s, e) = bar_cols(h, t0, span, w);
    let sym = if h.delta_ns == 0 { "▏" } else { "█" };
    for c in s..e {
        if let Some(cell) = buf.cell_mut((x + c, y)) {
            cell.set_symbol(sym).set_style(style);
        }
    }
}

/// Keeps `selected` inside the `rows` shown from `offset`, moving as little
/// as possible so the list does not jump.
fn keep_visible(offset: usize, selected: usize, rows: usize, len: usize) -> usize {
    if rows == 0 {
        return 0;
    }
    let mut off = offset.min(len.saturating_sub(rows));
    if selected < off {
        off = selected;
    } else if selected >= off + rows {
        off = selected + 1 - rows;
    }
    off
}

fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Text cut to `n` columns with a `…` when it does not fit; honours padding.
struct Trunc<'a>(&'a str, usize);

impl std::fmt::Display for Trunc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Trunc(s, n) = *self;
        if width(s) <= n {
            return f.pad(s);
        }
        let mut out = crate::text::StackStr::<160>::new();
        if n > 0 {
            let cut = s
                .char_indices()
                .nth(n - 1)
                .map(|(i, _)| i)
                .unwrap_or(s.len());
            let _ = std::fmt::Write::write_str(&mut out, &s[..cut]);
            let _ = std::fmt::Write::write_str(&mut out, "…");
        }
        f.pad(out.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_cover_their_delta() {
        let hop = |ts, d| Hop {
            ts_ns: ts,
            delta_ns: d,
            ..Hop::default()
        };
        // Axis 0..100 over 10 columns.
        assert_eq!(bar_cols(&hop(1000, 0), 1000, 100, 10), (0, 1));
        assert_eq!(bar_cols(&hop(1050, 50), 1000, 100, 10), (0, 5));
        assert_eq!(bar_cols(&hop(1100, 50), 1000, 100, 10), (5, 10));
        // A tiny delta still gets one column.
        assert_eq!(bar_cols(&hop(1051, 1), 1000, 100, 10), (5, 6));
    }

    #[test]
    fn scrolling_keeps_selection_visible() {
        assert_eq!(keep_visible(0, 0, 5, 100), 0);
        assert_eq!(keep_visible(0, 7, 5, 100), 3);
        assert_eq!(keep_visible(3, 4, 5, 100), 3);
        assert_eq!(keep_visible(3, 1, 5, 100), 1);
        assert_eq!(keep_visible(50, 9, 5, 10), 5);
    }

    #[test]
    fn trunc_marks_cut_text() {
        assert_eq!(format!("{:<6}", Trunc("abc", 6)), "abc   ");
        assert_eq!(format!("{}", Trunc("abcdefgh", 4)), "abc…");
    }
}
