//! Probe id -> name. Kernel probe ids are named by [`probes::id::name`];
//! uprobes (ids from [`probes::id::UPROBE_BASE`]) get their names from the
//! caller, who knows which symbol each id was attached to.

use std::borrow::Cow;

/// The table the correlator names probes with. Start from
/// [`ProbeNames::default`] (the kernel probes) and [`ProbeNames::set`] the
/// extra ones; a name set here wins over the built-in one.
#[derive(Clone, Debug, Default)]
pub struct ProbeNames {
    /// Indexed by probe id: ids are small and dense, and this is asked once
    /// per hop of every timeline.
    extra: Vec<Option<String>>,
}

impl ProbeNames {
    pub fn new() -> Self {
        Self::default()
    }

    /// Names (or renames) probe `id`, e.g. `set(UPROBE_BASE, "af_packet_input_node_fn")`.
    pub fn set(&mut self, id: u16, name: impl Into<String>) -> &mut Self {
        let i = id as usize;
        if i >= self.extra.len() {
            self.extra.resize(i + 1, None);
        }
        self.extra[i] = Some(name.into());
        self
    }

    /// The probe's name; `probe#N` for an id nobody named.
    pub fn name(&self, id: u16) -> Cow<'_, str> {
        if let Some(Some(n)) = self.extra.get(id as usize) {
            return Cow::Borrowed(n.as_str());
        }
        match probes::id::name(id) {
            Some(n) => Cow::Borrowed(n),
            None => Cow::Owned(format!("probe#{id}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probes::id;

    #[test]
    fn kernel_names_by_default_caller_names_win_unknown_ids_stay_visible() {
        let mut n = ProbeNames::default();
        assert_eq!(n.name(id::VETH_XMIT), "veth_xmit");
        assert_eq!(n.name(id::TP_KFREE_SKB), "skb:kfree_skb");
        assert_eq!(n.name(id::UPROBE_BASE), "probe#48");
        n.set(id::UPROBE_BASE, "af_packet_input_node_fn");
        assert_eq!(n.name(id::UPROBE_BASE), "af_packet_input_node_fn");
    }
}
