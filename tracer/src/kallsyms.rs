//! /proc/kallsyms: which kernel functions exist, under which name (the
//! compiler renames some: `.constprop.0`, `.isra.0`, `.part.0`), and in
//! which module.

use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// The name as in kallsyms, e.g. `__netif_receive_skb_core.constprop.0`.
    pub name: String,
    /// The module that holds it (`veth`), None for vmlinux.
    pub module: Option<String>,
}

#[derive(Debug, Default)]
pub struct Kallsyms {
    /// Base name (suffixes stripped) -> every text symbol with that base.
    by_base: HashMap<String, Vec<Symbol>>,
}

/// Strips compiler suffixes: `f.constprop.0` -> `f`, `f.isra.0.cold` -> `f`.
pub fn base_name(name: &str) -> &str {
    const SUFFIXES: [&str; 5] = [".constprop.", ".isra.", ".part.", ".cold", ".llvm."];
    let cut = SUFFIXES.iter().filter_map(|s| name.find(s)).min();
    match cut {
        Some(i) if i > 0 => &name[..i],
        _ => name,
    }
}

impl Kallsyms {
    pub fn read() -> std::io::Result<Kallsyms> {
        Ok(Kallsyms::parse(&std::fs::read_to_string("/proc/kallsyms")?))
    }

    pub fn parse(text: &str) -> Kallsyms {
        let mut by_base: HashMap<String, Vec<Symbol>> = HashMap::new();
        for line in text.lines() {
            let mut it = line.split_ascii_whitespace();
            let (Some(_addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            // Only functions (text symbols) can be probed.
            if kind != "t" && kind != "T" {
                continue;
            }
            let module = it
                .next()
                .map(|m| m.trim_start_matches('[').trim_end_matches(']').to_string());
            by_base
                .entry(base_name(name).to_string())
                .or_default()
                .push(Symbol {
                    name: name.to_string(),
                    module,
                });
        }
        Kallsyms { by_base }
    }

    /// The symbol to probe for function `func`: the exact name when the
    /// kernel has it, else a compiler variant (`.constprop.N`, `.isra.N`,
    /// `.part.N`), never a `.cold` fragment.
    pub fn resolve(&self, func: &str) -> Option<&Symbol> {
        let all = self.by_base.get(func)?;
        all.iter()
            .find(|s| s.name == func)
            .or_else(|| all.iter().find(|s| !s.name.contains(".cold")))
    }

    pub fn len(&self) -> usize {
        self.by_base.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_base.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff81a1b2c0 t __netif_receive_skb_core.constprop.0
ffffffff81a1b100 T netif_rx
ffffffff81a1b200 T __netif_rx
ffffffff81a1b300 t tcp_queue_rcv
ffffffff81a1b400 d some_data
ffffffff81a1b500 t ip_rcv_core.isra.0
ffffffff81a1b600 t ip_rcv_core.isra.0.cold
ffffffffc0a01000 t veth_xmit\t[veth]
ffffffffc0b02000 t br_handle_frame\t[bridge]
ffffffff81a1b700 t foo.part.0
";

    #[test]
    fn exact_names_and_variants_resolve() {
        let k = Kallsyms::parse(SAMPLE);
        assert_eq!(k.resolve("netif_rx").unwrap().name, "netif_rx");
        assert_eq!(k.resolve("__netif_rx").unwrap().name, "__netif_rx");
        assert_eq!(
            k.resolve("__netif_receive_skb_core").unwrap().name,
            "__netif_receive_skb_core.constprop.0"
        );
        assert_eq!(k.resolve("ip_rcv_core").unwrap().name, "ip_rcv_core.isra.0");
        assert_eq!(k.resolve("foo").unwrap().name, "foo.part.0");
        assert!(
            k.resolve("some_data").is_none(),
            "data symbols are not functions"
        );
        assert!(k.resolve("nope").is_none());
    }

    #[test]
    fn module_symbols_carry_their_module() {
        let k = Kallsyms::parse(SAMPLE);
        let v = k.resolve("veth_xmit").unwrap();
        assert_eq!(v.module.as_deref(), Some("veth"));
        assert_eq!(
            k.resolve("br_handle_frame").unwrap().module.as_deref(),
            Some("bridge")
        );
        assert_eq!(k.resolve("netif_rx").unwrap().module, None);
    }

    #[test]
    fn base_name_strips_compiler_suffixes() {
        assert_eq!(base_name("a.constprop.0"), "a");
        assert_eq!(base_name("a.isra.0.cold"), "a");
        assert_eq!(base_name("a.llvm.123"), "a");
        assert_eq!(base_name("plain"), "plain");
    }

    #[test]
    fn running_kernel_has_the_core_rx_path() {
        // The real /proc/kallsyms of this machine: every kernel we support
        // has these (as exact names or variants).
        let Ok(k) = Kallsyms::read() else {
            panic!("/proc/kallsyms is not readable");
        };
        assert!(k.len() > 1000, "kallsyms looks empty: {} names", k.len());
        for f in [
            "__netif_receive_skb_core",
            "netif_rx",
            "ip_rcv",
            "tcp_queue_rcv",
        ] {
            assert!(k.resolve(f).is_some(), "{f} missing from /proc/kallsyms");
        }
    }
}
