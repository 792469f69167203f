//! Which kernel probe points a session attaches (`--probes`, `--skip-probes`).
//!
//! A point is named as it appears in a hop: a kernel function (`veth_xmit`)
//! or a tracepoint, with or without its category (`net:netif_rx` or
//! `netif_rx`); `*` and `?` glob. Fewer points cost less per packet (each
//! attached point runs a program for every skb that passes it) and give
//! shorter timelines. The points where a packet's life ends
//! (`skb:kfree_skb`, `skb:consume_skb`) are always attached: a timeline
//! completes there, and the kernel side forgets the skb there.

use crate::catalog::{FUNCTIONS, FuncPoint, TRACEPOINTS, TracePoint};
use crate::uprobes::glob_match;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Globs a point must match (empty: every point, as without --probes).
    pub only: Vec<String>,
    /// Globs that drop a point, also as another point's tracepoint fallback.
    pub skip: Vec<String>,
}

fn tp_names(t: &TracePoint) -> [String; 2] {
    [t.full_name(), t.name.to_string()]
}

fn any_match(globs: &[impl AsRef<str>], names: &[impl AsRef<str>]) -> bool {
    globs
        .iter()
        .any(|g| names.iter().any(|n| glob_match(g.as_ref(), n.as_ref())))
}

impl Selection {
    /// Every point, as without --probes and --skip-probes.
    pub fn all() -> Selection {
        Selection::default()
    }

    /// Whether to attach this function point (by fentry or kprobe).
    pub fn function(&self, f: &FuncPoint) -> bool {
        let names = [f.func];
        (self.only.is_empty() || any_match(&self.only, &names)) && !any_match(&self.skip, &names)
    }

    /// Whether to attach this tracepoint on its own: it always is when it
    /// ends skbs, else only when --probes names it.
    pub fn tracepoint(&self, t: &TracePoint) -> bool {
        t.always
            || (!self.only.is_empty()
                && any_match(&self.only, &tp_names(t))
                && !any_match(&self.skip, &tp_names(t)))
    }

    /// Whether this tracepoint may stand in for a selected function point
    /// that could not be attached.
    pub fn fallback(&self, t: &TracePoint) -> bool {
        t.always || !any_match(&self.skip, &tp_names(t))
    }
}

/// Every name a glob can match, for error messages and `--help`.
pub fn point_names() -> Vec<String> {
    let mut v: Vec<String> = FUNCTIONS.iter().map(|f| f.func.to_string()).collect();
    v.extend(TRACEPOINTS.iter().map(|t| t.full_name()));
    v
}

fn matches_some_point(glob: &str) -> bool {
    FUNCTIONS.iter().any(|f| glob_match(glob, f.func))
        || TRACEPOINTS.iter().any(|t| any_match(&[glob], &tp_names(t)))
}

fn check_glob(s: &str) -> Result<String, String> {
    let g = s.trim();
    if g.is_empty() {
        return Err("empty probe name".into());
    }
    if !matches_some_point(g) {
        return Err(format!(
            "{g:?} matches no probe point; the points are: {}",
            point_names().join(", ")
        ));
    }
    Ok(g.to_string())
}

/// clap value parser for one `--probes` item.
pub fn parse_only(s: &str) -> Result<String, String> {
    check_glob(s)
}

/// clap value parser for one `--skip-probes` item: the end points cannot
/// be skipped.
pub fn parse_skip(s: &str) -> Result<String, String> {
    let g = check_glob(s)?;
    if let Some(t) = TRACEPOINTS
        .iter()
        .find(|t| t.always && any_match(&[&g], &tp_names(t)))
    {
        return Err(format!(
            "{g:?} would skip {}, where packets end: timelines complete there, so it stays attached",
            t.full_name()
        ));
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn func(name: &str) -> &'static FuncPoint {
        FUNCTIONS.iter().find(|f| f.func == name).expect(name)
    }

    fn tp(name: &str) -> &'static TracePoint {
        TRACEPOINTS.iter().find(|t| t.name == name).expect(name)
    }

    fn sel(only: &[&str], skip: &[&str]) -> Selection {
        Selection {
            only: only.iter().map(|s| s.to_string()).collect(),
            skip: skip.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn default_keeps_every_function_and_only_the_usual_tracepoints() {
        let s = Selection::all();
        assert!(FUNCTIONS.iter().all(|f| s.function(f)));
        for t in TRACEPOINTS {
            // Without --probes a tracepoint is attached on its own only when
            // it ends skbs; the others stand in for functions.
            assert_eq!(s.tracepoint(t), t.always, "{}", t.full_name());
            assert!(s.fallback(t), "{}", t.full_name());
        }
    }

    #[test]
    fn probes_pick_functions_and_tracepoints_by_name_or_glob() {
        let s = sel(&["ip_*", "net:netif_rx", "tcp_probe"], &[]);
        assert!(s.function(func("ip_rcv")));
        assert!(s.function(func("ip_local_deliver")));
        assert!(!s.function(func("veth_xmit")));
        assert!(!s.function(func("icmp_rcv")));
        assert!(s.tracepoint(tp("netif_rx")));
        assert!(s.tracepoint(tp("tcp_probe")));
        assert!(!s.tracepoint(tp("net_dev_queue")));
        // The end points stay.
        assert!(s.tracepoint(tp("consume_skb")));
        assert!(s.tracepoint(tp("kfree_skb")));
    }

    #[test]
    fn skip_drops_points_and_their_use_as_fallbacks() {
        let s = sel(&[], &["net:net_dev_*", "veth_xmit"]);
        assert!(!s.function(func("veth_xmit")));
        assert!(s.function(func("dev_hard_start_xmit")));
        assert!(!s.fallback(tp("net_dev_start_xmit")));
        assert!(!s.fallback(tp("net_dev_queue")));
        assert!(s.fallback(tp("netif_rx")));
        let s = sel(&["netif_*"], &["netif_rx"]);
        assert!(!s.tracepoint(tp("netif_rx")));
        assert!(s.tracepoint(tp("netif_receive_skb")));
    }

    #[test]
    fn bad_names_and_end_points_are_refused() {
        let e = parse_only("no_such_fn").unwrap_err();
        assert!(e.contains("matches no probe point"), "{e}");
        assert!(e.contains("veth_xmit") && e.contains("net:netif_rx"), "{e}");
        assert!(parse_only(" ").is_err());
        assert_eq!(parse_only("skb:*").as_deref(), Ok("skb:*"));
        let e = parse_skip("consume_skb").unwrap_err();
        assert!(
            e.contains("skb:consume_skb") && e.contains("stays attached"),
            "{e}"
        );
        assert!(parse_skip("skb:*").is_err());
        assert_eq!(parse_skip("tcp_probe").as_deref(), Ok("tcp_probe"));
    }
}
