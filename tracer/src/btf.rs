//! Struct field offsets and enum names from the running kernel's BTF
//! (/sys/kernel/btf/vmlinux), parsed with btf-rs. Rust eBPF has no CO-RE, so
//! these offsets are what makes the programs right on every kernel.

use std::collections::HashMap;
use std::path::Path;

use btf_rs::{Btf, Type};
use probes::Offsets;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "this kernel exposes no BTF at {path}: skbtrace reads struct layouts from it and needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian, Ubuntu, Fedora and RHEL kernels have it)"
    )]
    NoVmlinux { path: String },
    #[error("cannot parse {path}: {source}")]
    Parse { path: String, source: btf_rs::Error },
    #[error("BTF has no struct {0}")]
    NoStruct(String),
    #[error("BTF struct {strukt} has no field {field}")]
    NoField { strukt: String, field: String },
    #[error("BTF field {strukt}.{field} is {got} bytes, skbtrace reads {want}")]
    Size {
        strukt: String,
        field: String,
        got: usize,
        want: usize,
    },
}

/// A field's place in its struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: u32,
    pub size: usize,
}

pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    /// The running kernel's BTF. `SKBTRACE_VMLINUX_BTF` points elsewhere
    /// (tests use it to check the no-BTF error).
    pub fn load() -> Result<KernelBtf, BtfError> {
        let path = std::env::var("SKBTRACE_VMLINUX_BTF").unwrap_or_else(|_| VMLINUX_BTF.into());
        if !Path::new(&path).exists() {
            return Err(BtfError::NoVmlinux { path });
        }
        KernelBtf::from_file(&path)
    }

    pub fn from_file(path: &str) -> Result<KernelBtf, BtfError> {
        let btf = Btf::from_file(path).map_err(|source| BtfError::Parse {
            path: path.into(),
            source,
        })?;
        Ok(KernelBtf { btf })
    }

    fn strukt(&self, name: &str) -> Result<btf_rs::Struct, BtfError> {
        let types = self.btf.resolve_types_by_name(name).unwrap_or_default();
        types
            .into_iter()
            .find_map(|t| match t {
                // Forward declarations have no members; skip them.
                Type::Struct(s) if !s.members.is_empty() => Some(s),
                _ => None,
            })
            .ok_or_else(|| BtfError::NoStruct(name.into()))
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn skip_mods(&self, mut t: Type) -> Type {
        for _ in 0..16 {
            let next = match &t {
                Type::Typedef(x) => self.btf.resolve_chained_type(x),
                Type::Volatile(x) | Type::Const(x) | Type::Restrict(x) => {
                    self.btf.resolve_chained_type(x)
                }
                Type::TypeTag(x) => self.btf.resolve_chained_type(x),
                _ => return t,
            };
            match next {
                Ok(n) => t = n,
                Err(_) => return t,
            }
        }
        t
    }

    fn size_of(&self, t: Type) -> usize {
        match self.skip_mods(t) {
            Type::Int(i) => i.size(),
            Type::Ptr(_) => 8,
            Type::Enum(e) => e.size(),
            Type::Enum64(e) => e.size(),
            Type::Struct(s) | Type::Union(s) => s.size(),
            Type::Array(a) => {
                let elem = self
                    .btf
                    .resolve_chained_type(&a)
                    .map(|e| self.size_of(e))
                    .unwrap_or(0);
                elem * a.len()
            }
            _ => 0,
        }
    }

    /// Finds `name` among `s`'s members, descending into anonymous structs
    /// and unions (sk_buff keeps most fields in them). Returns the bit
    /// offset and the member's type.
    fn find_member(&self, s: &btf_rs::Struct, name: &str, depth: u32) -> Option<(u32, Type)> {
        if depth > 8 {
            return None;
        }
        for m in &s.members {
            let mname = self.btf.resolve_name(m).unwrap_or_default();
            let Ok(mt) = self.btf.resolve_chained_type(m) else {
                continue;
            };
            if mname == name {
                return Some((m.bit_offset(), mt));
            }
            if mname.is_empty()
                && let Type::Struct(inner) | Type::Union(inner) = self.skip_mods(mt)
                && let Some((off, t)) = self.find_member(&inner, name, depth + 1)
            {
                return Some((m.bit_offset() + off, t));
            }
        }
        None
    }

    /// The byte offset and size of `path` (e.g. `ns.inum`) in struct `strukt`.
    pub fn field(&self, strukt: &str, path: &str) -> Result<Field, BtfError> {
        let no_field = || BtfError::NoField {
            strukt: strukt.into(),
            field: path.into(),
        };
        let mut s = self.strukt(strukt)?;
        let mut bits = 0u32;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let (off, t) = self.find_member(&s, part, 0).ok_or_else(no_field)?;
            bits += off;
            if i + 1 == parts.len() {
                if !bits.is_multiple_of(8) {
                    return Err(no_field());
                }
                return Ok(Field {
                    offset: bits / 8,
                    size: self.size_of(t),
                });
            }
            match self.skip_mods(t) {
                Type::Struct(inner) | Type::Union(inner) => s = inner,
                _ => return Err(no_field()),
            }
        }
        Err(no_field())
    }

    fn sized(&self, strukt: &str, path: &str, want: usize) -> Result<u32, BtfError> {
        let f = self.field(strukt, path)?;
        if f.size != want {
            return Err(BtfError::Size {
                strukt: strukt.into(),
                field: path.into(),
                got: f.size,
                want,
            });
        }
        Ok(f.offset)
    }

    /// Every offset the eBPF programs use, checked for the sizes they read.
    pub fn offsets(&self) -> Result<Offsets, BtfError> {
        Ok(Offsets {
            skb_len: self.sized("sk_buff", "len", 4)?,
            skb_data: self.sized("sk_buff", "data", 8)?,
            skb_head: self.sized("sk_buff", "head", 8)?,
            skb_mac_header: self.sized("sk_buff", "mac_header", 2)?,
            skb_network_header: self.sized("sk_buff", "network_header", 2)?,
            skb_transport_header: self.sized("sk_buff", "transport_header", 2)?,
            skb_dev: self.sized("sk_buff", "dev", 8)?,
            skb_protocol: self.sized("sk_buff", "protocol", 2)?,
            skb_mark: self.sized("sk_buff", "mark", 4)?,
            dev_ifindex: self.sized("net_device", "ifindex", 4)?,
            dev_name: self.sized("net_device", "name", 16)?,
            // possible_net_t is a struct holding just the `struct net *`.
            dev_nd_net: self.sized("net_device", "nd_net", 8)?,
            net_ns_inum: self.sized("net", "ns.inum", 4)?,
            skb_data_len: self.sized("sk_buff", "data_len", 4)?,
            task_comm: self.sized("task_struct", "comm", 16)?,
            _pad: 0,
        })
    }

    /// Values of an enum by name, with `prefix` stripped from the names
    /// (e.g. `skb_drop_reason`, `SKB_DROP_REASON_`).
    pub fn enum_values(&self, name: &str, prefix: &str) -> HashMap<u32, String> {
        let mut out = HashMap::new();
        for t in self.btf.resolve_types_by_name(name).unwrap_or_default() {
            if let Type::Enum(e) = t {
                for m in &e.members {
                    if let Ok(n) = self.btf.resolve_name(m) {
                        out.insert(m.val(), n.trim_start_matches(prefix).to_string());
                    }
                }
            }
        }
        out
    }

    /// True if vmlinux BTF describes function `name` (needed for fentry).
    pub fn has_func(&self, name: &str) -> bool {
        self.btf
            .resolve_types_by_name(name)
            .unwrap_or_default()
            .iter()
            .any(|t| matches!(t, Type::Func(_)))
    }

    pub fn inner(&self) -> &Btf {
        &self.btf
    }
}

/// Drop reason names (`NOT_SPECIFIED`, `NETFILTER_DROP`, ...) by value.
pub fn drop_reasons(btf: &KernelBtf) -> HashMap<u32, String> {
    btf.enum_values("skb_drop_reason", "SKB_DROP_REASON_")
}

#[cfg(test)]
mod tests {
    use super::*;

    // These read the real BTF of the running kernel: offsets must be
    // plausible and consistent with what the kernel's own layout implies.
    fn kernel() -> KernelBtf {
        KernelBtf::load().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn offsets_from_running_kernel_are_consistent() {
        let k = kernel();
        let o = k.offsets().unwrap_or_else(|e| panic!("{e}"));
        // sk_buff starts with next/prev (or an rb_node): 16 bytes before dev.
        assert_eq!(
            o.skb_dev, 16,
            "skb->dev sits after next/prev on every kernel since 4.x"
        );
        // The header offsets are 3 consecutive u16s in struct_group(headers).
        assert_eq!(o.skb_network_header, o.skb_transport_header + 2);
        assert_eq!(o.skb_mac_header, o.skb_network_header + 2);
        assert!(
            o.skb_head > o.skb_len && o.skb_data == o.skb_head + 8,
            "{o:?}"
        );
        // net_device's layout moves between kernels (6.8 regrouped it by
        // cache line); its fields must at least be distinct. That they are
        // the right ones is what the integration tests check: the names,
        // ifindexes and netns inodes read in the kernel match `ip`.
        let dev = [o.dev_name, o.dev_ifindex, o.dev_nd_net];
        assert!(
            dev[0] != dev[1] && dev[1] != dev[2] && dev[0] != dev[2],
            "{o:?}"
        );
        assert!(o.dev_ifindex > 0 && o.dev_nd_net > 0 && o.net_ns_inum > 0);
    }

    #[test]
    fn missing_struct_and_field_are_errors_that_say_which() {
        let k = kernel();
        let e = k.field("sk_buff", "no_such_field").unwrap_err().to_string();
        assert!(e.contains("sk_buff") && e.contains("no_such_field"), "{e}");
        let e = k
            .field("no_such_struct_xyz", "len")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no_such_struct_xyz"), "{e}");
    }

    #[test]
    fn size_mismatch_is_reported() {
        let k = kernel();
        let e = k.sized("sk_buff", "len", 2).unwrap_err().to_string();
        assert!(e.contains("4 bytes"), "{e}");
    }

    #[test]
    fn drop_reasons_include_the_common_ones() {
        let r = drop_reasons(&kernel());
        let names: Vec<&str> = r.values().map(String::as_str).collect();
        for want in ["NOT_SPECIFIED", "NETFILTER_DROP"] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
    }

    #[test]
    fn functions_are_found_in_btf() {
        let k = kernel();
        assert!(k.has_func("netif_rx"));
        assert!(!k.has_func("definitely_not_a_kernel_function"));
    }
}
